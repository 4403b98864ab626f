package secrets

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
)

// SigV4A signs with an ECDSA P-256 key that both sides derive from the
// secret key, so it needs no region-specific HMAC key. The SDK for Go
// keeps its implementation internal; this follows the derivation AWS
// specifies (NIST SP 800-108 KDF in counter mode, HMAC-SHA256, as
// aws-c-auth implements it) and is tested against aws-c-auth's published
// SigV4A vectors.

// maxDERSig is the longest DER encoding of a P-256 ECDSA signature.
const maxDERSig = 72

// maxKDFCounter bounds the derivation's retry counter (one byte, 1…254).
const maxKDFCounter = 254

// p256NMinus2 is the order of P-256 minus two: a candidate above it is
// rejected, so that candidate+1 is a valid private scalar in [1, n-1].
var p256NMinus2 = new(big.Int).Sub(elliptic.P256().Params().N, big.NewInt(2))

// deriveV4AKey derives the SigV4A private key of an access key pair.
func deriveV4AKey(keyID, secret string) (*ecdsa.PrivateKey, error) {
	input := []byte("AWS4A" + secret)
	for counter := 1; counter <= maxKDFCounter; counter++ {
		// Fixed input: i (1, four bytes), label, 0x00, context (key id and
		// counter), L (256, four bytes).
		fixed := make([]byte, 0, 4+len(algV4A)+1+len(keyID)+1+4)
		fixed = append(fixed, 0, 0, 0, 1)
		fixed = append(fixed, algV4A...)
		fixed = append(fixed, 0)
		fixed = append(fixed, keyID...)
		fixed = append(fixed, byte(counter))
		fixed = append(fixed, 0, 0, 1, 0)
		k0 := hmacSHA256(input, string(fixed))
		c := new(big.Int).SetBytes(k0)
		if c.Cmp(p256NMinus2) > 0 {
			continue
		}
		d := c.Add(c, big.NewInt(1)).FillBytes(make([]byte, 32))
		key, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d)
		if err != nil {
			return nil, fmt.Errorf("sigv4a key: %w", err)
		}
		return key, nil
	}
	return nil, errors.New("sigv4a key: derivation found no key")
}

// signV4A signs a string to sign: ECDSA over its SHA-256, DER, hex.
func signV4A(key *ecdsa.PrivateKey, sts string) (string, error) {
	sum := sha256.Sum256([]byte(sts))
	der, err := ecdsa.SignASN1(rand.Reader, key, sum[:])
	if err != nil {
		return "", fmt.Errorf("sigv4a sign: %w", err)
	}
	return hex.EncodeToString(der), nil
}

func verifyV4A(pub *ecdsa.PublicKey, sts, sigHex string) bool {
	der, err := hex.DecodeString(sigHex)
	if err != nil {
		return false
	}
	sum := sha256.Sum256([]byte(sts))
	return ecdsa.VerifyASN1(pub, sum[:], der)
}

// signV4AWidth signs and returns a signature of exactly width hex digits,
// or at most width when the field may be padded with '*': a re-signed
// aws-chunked body must keep its length (Content-Length and
// x-amz-decoded-content-length are signed), and DER signatures vary by a
// few bytes. ECDSA signatures are random, so signing again gives another
// length.
func signV4AWidth(key *ecdsa.PrivateKey, sts string, width int, padded bool) (string, error) {
	for range 64 {
		sig, err := signV4A(key, sts)
		if err != nil {
			return "", err
		}
		if len(sig) == width || padded && len(sig) < width {
			return sig, nil
		}
	}
	return "", fmt.Errorf("sigv4a sign: no signature of %d hex digits", width)
}
