package secrets

import (
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
)

// knownPrefixes are kept verbatim so tools that sniff a token's kind (gh,
// the Anthropic SDK, Slack clients) still accept the surrogate. Longest
// first, so "sk-ant-" wins over "sk-".
var knownPrefixes = []string{
	"github_pat_",
	"sk-ant-",
	"xoxb-",
	"xoxp-",
	"ghp_",
	"gho_",
	"ghs_",
	"ghr_",
	"sk-",
}

const (
	lowerChars = "abcdefghijklmnopqrstuvwxyz"
	upperChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	digitChars = "0123456789"
)

// maxSurrogateTries bounds the retry when a short value's surrogate
// happens to equal it (a one-digit secret collides one time in ten).
const maxSurrogateTries = 64

// ErrNoEntropy is returned for a value with no letter or digit outside its
// known prefix: no surrogate of the same shape could differ from it.
var ErrNoEntropy = errors.New("value has no letters or digits to randomise")

// Surrogate returns a random stand-in for real with the same length, the
// same character class at every position (lower, upper, digit; any other
// byte kept as is) and the same known prefix, drawn from crypto/rand. It is
// never equal to real.
func Surrogate(real string) (string, error) {
	if real == "" {
		return "", errors.New("surrogate: empty value")
	}
	prefix := ""
	for _, p := range knownPrefixes {
		if len(real) > len(p) && real[:len(p)] == p {
			prefix = p
			break
		}
	}
	for range maxSurrogateTries {
		out := []byte(real)
		randomised := 0
		for i := len(prefix); i < len(out); i++ {
			var set string
			switch c := out[i]; {
			case c >= 'a' && c <= 'z':
				set = lowerChars
			case c >= 'A' && c <= 'Z':
				set = upperChars
			case c >= '0' && c <= '9':
				set = digitChars
			default:
				continue
			}
			n, err := rand.Int(rand.Reader, big.NewInt(int64(len(set))))
			if err != nil {
				return "", fmt.Errorf("surrogate: %w", err)
			}
			out[i] = set[n.Int64()]
			randomised++
		}
		if randomised == 0 {
			return "", fmt.Errorf("surrogate: %w", ErrNoEntropy)
		}
		if s := string(out); s != real {
			return s, nil
		}
	}
	return "", errors.New("surrogate: could not produce a value different from the real one")
}
