package dashboard

import (
	"crypto/subtle"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// Security headers on every response (SPEC S9). No inline script or style
// anywhere: htmx is loaded from /static and configured by a meta tag.
var securityHeaders = map[string]string{
	"Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
	"X-Content-Type-Options":  "nosniff",
	"Referrer-Policy":         "same-origin",
	"X-Frame-Options":         "DENY",
}

// csrfCookie holds the double-submit token: forms carry the same value in
// csrfField. SameSite=Strict keeps it off cross-site requests as well.
const (
	csrfCookie = "airut_csrf"
	csrfField  = "csrf"
)

// secure wraps every handler: headers, Host check, CSRF check.
func (s *Server) secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		for k, v := range securityHeaders {
			h.Set(k, v)
		}
		if !s.allowedHost(r.Host) {
			// DNS rebinding: a foreign page resolving its own name to
			// 127.0.0.1 arrives with its own Host.
			http.Error(w, "misdirected request: this dashboard does not serve host "+r.Host, http.StatusMisdirectedRequest)
			return
		}
		if !safeMethod(r.Method) {
			if why := s.csrfFailure(r); why != "" {
				s.log.Warn("dashboard: state-changing request refused", "path", r.URL.Path, "reason", why)
				http.Error(w, "forbidden: "+why, http.StatusForbidden)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// allowedHost: a loopback name or address, the bind address, or
// base_url's host.
func (s *Server) allowedHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if host == "" {
		return false
	}
	if isLoopbackHost(host) {
		return true
	}
	if bind := strings.ToLower(s.opts.Config().Dashboard.Host); bind != "" && host == bind && !isUnspecified(bind) {
		return true
	}
	if u := s.baseURL(); u != nil && strings.EqualFold(u.Hostname(), host) {
		return true
	}
	return false
}

func isLoopbackHost(h string) bool {
	h = strings.ToLower(strings.Trim(h, "[]"))
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func isUnspecified(h string) bool {
	ip := net.ParseIP(strings.Trim(h, "[]"))
	return ip != nil && ip.IsUnspecified()
}

// csrfFailure says why a state-changing request is refused, or "". The
// request must come from the same origin (Origin, else Sec-Fetch-Site;
// a client that sends neither is not a browser and cannot be forged by a
// web page) and carry X-Requested-With (API) or the CSRF token (forms).
func (s *Server) csrfFailure(r *http.Request) string {
	if o := r.Header.Get("Origin"); o != "" {
		if !s.sameOrigin(r, o) {
			return "cross-origin request (Origin " + o + ")"
		}
	} else if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		return "cross-site request (Sec-Fetch-Site " + site + ")"
	}
	if strings.HasPrefix(r.URL.Path, "/api/") {
		if r.Header.Get("X-Requested-With") == "" {
			return "API requests need an X-Requested-With header"
		}
		return ""
	}
	c, err := r.Cookie(csrfCookie)
	if err != nil || c.Value == "" {
		return "no CSRF cookie: reload the page"
	}
	tok := r.Header.Get("X-CSRF-Token")
	if tok == "" {
		tok = formValue(r, csrfField)
	}
	if subtle.ConstantTimeCompare([]byte(tok), []byte(c.Value)) != 1 {
		return "missing or wrong CSRF token: reload the page"
	}
	return ""
}

// formValue reads a field of a urlencoded or multipart form.
func formValue(r *http.Request, name string) string {
	if strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/form-data") {
		if err := r.ParseMultipartForm(maxUpload); err != nil {
			return ""
		}
	}
	return r.FormValue(name)
}

// sameOrigin: origin is the request's own scheme and host (as the browser
// addressed it), or base_url's origin.
func (s *Server) sameOrigin(r *http.Request, origin string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) && s.allowedHost(u.Host) {
		return true
	}
	if b := s.baseURL(); b != nil && strings.EqualFold(b.Scheme, u.Scheme) && strings.EqualFold(b.Host, u.Host) {
		return true
	}
	return false
}

// CSRFToken returns the token a form on the page being rendered must
// carry in its "csrf" field, setting the cookie when the browser has none.
// Packages that Mount pages use it for their forms.
func CSRFToken(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(csrfCookie); err == nil && len(c.Value) == 32 {
		return c.Value
	}
	if v := w.Header().Get("X-Airut-CSRF"); v != "" {
		return v // set earlier in this response
	}
	tok := randomToken()
	http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: tok, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
	w.Header().Set("X-Airut-CSRF", tok)
	return tok
}
