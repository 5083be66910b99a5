package reliable

import (
	"slices"
	"strconv"
	"strings"
	"testing"
)

// FuzzParseFEC: what ParseFEC (--fec) accepts is a setting Validate
// accepts, printed by FECString as text that parses back to it; what it
// refuses it refuses naming the input and leaving the Config alone.
func FuzzParseFEC(f *testing.F) {
	for _, s := range []string{"10,3", "0,0", " 4 , 2 ", "1,1", "255,1", "128,128", "129,128", "0,3", "3,0",
		"-1,3", "10", "10,3,1", ",", "+1,+1", "1e1,3", "9223372036854775807,1", "\u00a010,3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c := Config{DataShards: 7, ParityShards: 5}
		if err := c.ParseFEC(s); err != nil {
			if !strings.Contains(err.Error(), strconv.Quote(s)) || c != (Config{DataShards: 7, ParityShards: 5}) {
				t.Fatalf("ParseFEC(%q) = %v and left %+v; want an error naming the input, the Config unchanged", s, err, c)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("ParseFEC(%q) set %+v, which Validate refuses: %v", s, c, err)
		}
		var again Config
		if err := again.ParseFEC(c.FECString()); err != nil || again.FECString() != c.FECString() || again.NoFEC != c.NoFEC {
			t.Fatalf("ParseFEC(%q) = %+v, printed %q, which parses to %+v, %v", s, c, c.FECString(), again, err)
		}
	})
}

// FuzzCrypt holds Validate's reading of --crypt and --key to the rules
// Config states: a cipher from CryptNames, and a key for any but "null";
// no crypt means aes-128-gcm with a key and none without. A refusal names
// the cipher it refuses.
func FuzzCrypt(f *testing.F) {
	for _, s := range append(CryptNames(), "", "AES", "aes-256", " none") {
		f.Add(s, "")
		f.Add(s, "k")
	}
	f.Fuzz(func(t *testing.T, crypt, key string) {
		if len(key) > 64 {
			key = key[:64] // key derivation costs the same whatever the key; keep inputs small
		}
		c := Config{Crypt: crypt, Key: key}
		err := c.Validate()
		want := crypt == "" || slices.Contains(CryptNames(), crypt) && (key != "" || crypt == "null")
		if (err == nil) != want {
			t.Fatalf("Config{Crypt: %q, Key: %q}.Validate() = %v, want ok %v", crypt, key, err, want)
		}
		if err != nil && !strings.Contains(err.Error(), strconv.Quote(crypt)) {
			t.Fatalf("Config{Crypt: %q}.Validate() = %v, which does not name it", crypt, err)
		}
		if _, err := c.HeaderBytes(); (err == nil) != want {
			t.Fatalf("Config{Crypt: %q, Key: %q}.HeaderBytes() = %v, want ok %v", crypt, key, err, want)
		}
	})
}
