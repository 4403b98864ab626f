package redact

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync/atomic"
)

// NewHandler returns a handler that redacts every record with r before
// passing it to inner: the message, attribute keys and values, values inside
// groups, errors, fmt.Stringer and slog.LogValuer values, and anything else
// whose printed or JSON form contains a secret.
//
// Attributes given to WithAttrs are kept unredacted and redacted again
// whenever the registry has changed since, so a secret registered after a
// logger was built is still masked in that logger's attributes.
func NewHandler(inner slog.Handler, r *Registry) slog.Handler {
	return &handler{inner: inner, reg: r}
}

type handler struct {
	inner slog.Handler
	reg   *Registry
	ops   []op // WithGroup/WithAttrs calls, in order, unredacted
	built atomic.Pointer[builtHandler]
}

// op is one WithGroup (group != "") or WithAttrs call.
type op struct {
	group string
	attrs []slog.Attr
}

type builtHandler struct {
	gen uint64
	h   slog.Handler
}

func (h *handler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.inner.Enabled(ctx, level)
}

func (h *handler) Handle(ctx context.Context, rec slog.Record) error {
	out := slog.NewRecord(rec.Time, rec.Level, h.reg.Redact(rec.Message), rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(redactAttr(h.reg, a))
		return true
	})
	return h.current().Handle(ctx, out)
}

func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	return h.with(op{attrs: append([]slog.Attr(nil), attrs...)})
}

func (h *handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return h.with(op{group: name})
}

func (h *handler) with(o op) *handler {
	ops := make([]op, len(h.ops), len(h.ops)+1)
	copy(ops, h.ops)
	return &handler{inner: h.inner, reg: h.reg, ops: append(ops, o)}
}

// current returns inner with the recorded groups and attributes applied,
// redacted with the registry as it is now. The result is cached until the
// registry changes, because building it makes a JSON or text handler
// pre-format the attributes.
func (h *handler) current() slog.Handler {
	if len(h.ops) == 0 {
		return h.inner
	}
	gen := h.reg.generation() // read before building: a later Add rebuilds
	if b := h.built.Load(); b != nil && b.gen == gen {
		return b.h
	}
	next := h.inner
	for _, o := range h.ops {
		if o.group != "" {
			next = next.WithGroup(h.reg.Redact(o.group))
			continue
		}
		attrs := make([]slog.Attr, len(o.attrs))
		for i, a := range o.attrs {
			attrs[i] = redactAttr(h.reg, a)
		}
		next = next.WithAttrs(attrs)
	}
	h.built.Store(&builtHandler{gen: gen, h: next})
	return next
}

func redactAttr(r *Registry, a slog.Attr) slog.Attr {
	if r.generation() == 0 {
		return a
	}
	v := a.Value.Resolve()
	key := r.Redact(a.Key)
	switch v.Kind() {
	case slog.KindString:
		return slog.String(key, r.Redact(v.String()))
	case slog.KindGroup:
		group := v.Group()
		attrs := make([]slog.Attr, len(group))
		for i, g := range group {
			attrs[i] = redactAttr(r, g)
		}
		return slog.Attr{Key: key, Value: slog.GroupValue(attrs...)}
	case slog.KindAny:
		return slog.Attr{Key: key, Value: redactAny(r, v.Any())}
	default:
		// Numbers, bools, times and durations cannot hold a secret string.
		return slog.Attr{Key: key, Value: v}
	}
}

// redactAny masks a value of kind Any. The inner handler may print it with
// fmt (text) or encoding/json (JSON), which can show different fields, so a
// value is replaced by its redacted printed form when either shows a secret.
func redactAny(r *Registry, x any) slog.Value {
	switch t := x.(type) {
	case nil:
		return slog.AnyValue(nil)
	case Secret:
		return t.LogValue()
	case []byte:
		s := string(t)
		if red := r.Redact(s); red != s || containsEncoded(r, t) {
			return slog.StringValue(red)
		}
		return slog.AnyValue(t)
	case error:
		msg := t.Error()
		printed := fmt.Sprintf("%+v", t)
		if r.Redact(msg) != msg || r.Redact(printed) != printed || jsonLeaks(r, x) {
			return slog.StringValue(r.Redact(msg))
		}
		return slog.AnyValue(t)
	}
	printed := fmt.Sprintf("%+v", x)
	if red := r.Redact(printed); red != printed || jsonLeaks(r, x) {
		return slog.StringValue(red)
	}
	return slog.AnyValue(x)
}

func jsonLeaks(r *Registry, x any) bool {
	b, err := json.Marshal(x)
	if err != nil {
		return false
	}
	return r.Redact(string(b)) != string(b)
}

// containsEncoded reports whether b marshals to JSON (base64) that carries
// a secret, which a JSON handler would print.
func containsEncoded(r *Registry, b []byte) bool { return jsonLeaks(r, b) }
