package reliable

import (
	"crypto/pbkdf2"
	"crypto/sha1"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"time"

	kcp "github.com/xtaci/kcp-go/v5"
)

// Defaults, each with the reason for its value.
const (
	// DefaultDataShards and DefaultParityShards: 3 parity per 10 data
	// repairs up to 3 losses in 10 packets for 30% more packets, kcptun's
	// default.
	DefaultDataShards   = 10
	DefaultParityShards = 3
	// DefaultProfile is kcptun's fastest profile: nodelay, 10 ms interval,
	// fast resend after 2 skips, no congestion window. It shows what KCP can
	// buy; "normal" shows a gentler sender.
	DefaultProfile = "fast3"
	// DefaultSendWindow and DefaultReceiveWindow are kcptun's client
	// defaults, in segments: enough for bulk transfer on a LAN.
	DefaultSendWindow    = 128
	DefaultReceiveWindow = 512
	// DefaultMTU is kcptun's: leaves room for tunnel and PPPoE headers
	// under a 1500-byte Ethernet MTU.
	DefaultMTU = 1350
	// DefaultIdle: KCP has no FIN, so a server forgets a silent client
	// after this long.
	DefaultIdle = 60 * time.Second
	// DefaultMaxSessions bounds the server's session table (each session
	// holds windows and buffers) against floods of new source addresses.
	DefaultMaxSessions = 1024
	// DefaultCrypt is the cipher used when a key is given: authenticated,
	// so forged or corrupted packets are dropped rather than decrypted.
	DefaultCrypt = "aes-128-gcm"

	// keySalt and keyIterations derive the key as kcptun does, so kcptun
	// and any kcp-go program that follows it can talk to udplab.
	keySalt       = "kcp-go"
	keyIterations = 4096
	keyLength     = 32
)

// Profile is a KCP no-delay setting, as kcp.UDPSession.SetNoDelay takes it,
// and whether acknowledgements leave at once (SetACKNoDelay) rather than
// at the next interval.
type Profile struct {
	NoDelay, Interval, Resend, NoCongestion int
	AckNoDelay                              bool
}

// Profiles are kcptun's named modes, and rt, for a link whose losses
// parity mostly repairs (kcp-rt): a loss parity missed is resent at the
// first acknowledgement past it, which leaves at once; and a 50 ms
// interval, which puts the retransmission timeout 50 ms past the smoothed
// round trip, beyond the delay parity's repair and a lingering
// acknowledgement add (under fast3's 10 ms, most of kcp-rt's
// retransmissions were such timeouts, of segments parity had rebuilt).
var Profiles = map[string]Profile{
	"normal": {0, 40, 2, 1, false},
	"fast":   {0, 30, 2, 1, false},
	"fast2":  {1, 20, 2, 1, false},
	"fast3":  {1, 10, 2, 1, false},
	"rt":     {1, 50, 1, 1, true},
}

// ProfileNames lists the profile names in order of speed.
var ProfileNames = []string{"normal", "fast", "fast2", "fast3", "rt"}

// cipher is one of kcp-go's block ciphers, as kcptun names them. keySize is
// how many bytes of the derived key it takes; 0 takes all 32.
type cipher struct {
	keySize int
	build   func(key []byte) (kcp.BlockCrypt, error)
}

var ciphers = map[string]cipher{
	"aes-128-gcm": {16, kcp.NewAESGCMCrypt},
	"aes":         {0, kcp.NewAESBlockCrypt},
	"aes-128":     {16, kcp.NewAESBlockCrypt},
	"aes-192":     {24, kcp.NewAESBlockCrypt},
	"salsa20":     {0, kcp.NewSalsa20BlockCrypt},
	"blowfish":    {0, kcp.NewBlowfishBlockCrypt},
	"twofish":     {0, kcp.NewTwofishBlockCrypt},
	"cast5":       {16, kcp.NewCast5BlockCrypt},
	"3des":        {24, kcp.NewTripleDESBlockCrypt},
	"tea":         {16, kcp.NewTEABlockCrypt},
	"xtea":        {16, kcp.NewXTEABlockCrypt},
	"sm4":         {16, kcp.NewSM4BlockCrypt},
	"xor":         {0, kcp.NewSimpleXORBlockCrypt},
	// kcptun's "none" keeps the nonce and CRC32 header with no cipher;
	// "null" sends bare KCP with no header at all.
	"none": {0, kcp.NewNoneBlockCrypt},
	"null": {0, func([]byte) (kcp.BlockCrypt, error) { return nil, nil }},
}

// CryptNames lists the accepted --crypt values, sorted.
func CryptNames() []string {
	names := make([]string, 0, len(ciphers))
	for n := range ciphers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Config configures both ends of the reliable transport. Client and server
// must agree on FEC, Crypt and Key. The zero value (or a nil *Config) works:
// FEC 10,3, profile fast3, no encryption.
type Config struct {
	// DataShards and ParityShards set Reed-Solomon FEC. Both zero means the
	// defaults, 10 and 3; NoFEC turns FEC off.
	DataShards, ParityShards int
	NoFEC                    bool
	// Profile names a KCP profile from Profiles. Empty means fast3.
	Profile string
	// SendWindow and ReceiveWindow are KCP windows in segments. Zero means
	// 128 and 512.
	SendWindow, ReceiveWindow int
	// MTU is the largest UDP payload KCP sends, 256 to 1500. Zero means 1350.
	MTU int
	// Key is the pre-shared key; empty means no encryption. The cipher key
	// is derived from it as kcptun does (PBKDF2-SHA1, salt "kcp-go", 4096
	// iterations, 32 bytes; 128-bit ciphers take the first 16).
	Key string
	// Crypt names the cipher (see CryptNames). Empty means aes-128-gcm when
	// a Key is set. Any cipher but "null" needs a Key.
	Crypt string
	// Idle is how long a server keeps a session that sends nothing. Zero
	// means 60s. Clients ignore it.
	Idle time.Duration
	// MaxSessions bounds the server's sessions; a new client beyond it is
	// refused. Zero means 1024. Clients ignore it.
	MaxSessions int
	// Logger receives the server's readiness line and, at debug level, a
	// line per request. Nil means slog.Default().
	Logger *slog.Logger
	// AllowLowPorts: a server answers sources on ports below 1024 too. By default
	// they are dropped and counted: ordinary clients never send from one,
	// and reflection attacks aim replies at the services there.
	AllowLowPorts bool
}

// WithDefaults returns a copy of c (or of the zero Config, for nil) with
// every unset field at the default the transport would use.
func (c *Config) WithDefaults() Config {
	var cfg Config
	if c != nil {
		cfg = *c
	}
	cfg.DataShards, cfg.ParityShards = cfg.shards()
	if cfg.Profile == "" {
		cfg.Profile = DefaultProfile
	}
	if cfg.SendWindow == 0 {
		cfg.SendWindow = DefaultSendWindow
	}
	if cfg.ReceiveWindow == 0 {
		cfg.ReceiveWindow = DefaultReceiveWindow
	}
	if cfg.MTU == 0 {
		cfg.MTU = DefaultMTU
	}
	if cfg.Crypt == "" && cfg.Key != "" {
		cfg.Crypt = DefaultCrypt
	}
	if cfg.Idle == 0 {
		cfg.Idle = DefaultIdle
	}
	if cfg.MaxSessions == 0 {
		cfg.MaxSessions = DefaultMaxSessions
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return cfg
}

// populate returns a copy of c with every zero field set to its default,
// checked for nonsense, and the cipher built.
func (c *Config) populate() (Config, kcp.BlockCrypt, error) {
	cfg := c.WithDefaults()
	if err := cfg.validate(); err != nil {
		return cfg, nil, fmt.Errorf("reliable: %w", err)
	}
	block, err := cfg.block()
	if err != nil {
		return cfg, nil, fmt.Errorf("reliable: %w", err)
	}
	return cfg, block, nil
}

// Validate reports the first setting in c that the transport would refuse,
// after defaults are applied.
func (c *Config) Validate() error {
	_, _, err := c.populate()
	return err
}

func (c *Config) validate() error {
	if !c.NoFEC && (c.DataShards < 1 || c.ParityShards < 1 || c.DataShards+c.ParityShards > 256) {
		return fmt.Errorf("FEC %d,%d: want data and parity shards of at least 1 and at most 256 together, or NoFEC", c.DataShards, c.ParityShards)
	}
	if _, ok := Profiles[c.Profile]; !ok {
		return fmt.Errorf("profile %q: want one of %s", c.Profile, strings.Join(ProfileNames, ", "))
	}
	if c.SendWindow < 1 || c.SendWindow > 32768 || c.ReceiveWindow < 1 || c.ReceiveWindow > 32768 {
		return fmt.Errorf("window %d,%d: want 1 to 32768 segments", c.SendWindow, c.ReceiveWindow)
	}
	if c.MTU < 256 || c.MTU > 1500 {
		return fmt.Errorf("MTU %d: want 256 to 1500 bytes", c.MTU)
	}
	if c.Idle < 0 {
		return fmt.Errorf("idle %v: want a positive duration", c.Idle)
	}
	if c.MaxSessions < 0 {
		return fmt.Errorf("max sessions %d: want a positive number", c.MaxSessions)
	}
	if c.Crypt != "" {
		if _, ok := ciphers[c.Crypt]; !ok {
			return fmt.Errorf("crypt %q: want one of %s", c.Crypt, strings.Join(CryptNames(), ", "))
		}
		if c.Key == "" && c.Crypt != "null" {
			return fmt.Errorf("crypt %q needs a key", c.Crypt)
		}
	}
	return nil
}

func (c *Config) block() (kcp.BlockCrypt, error) {
	if c.Crypt == "" {
		return nil, nil
	}
	ci := ciphers[c.Crypt]
	key, err := DeriveKey(c.Key)
	if err != nil {
		return nil, err
	}
	if ci.keySize > 0 {
		key = key[:ci.keySize]
	}
	b, err := ci.build(key)
	if err != nil {
		return nil, fmt.Errorf("crypt %q: %w", c.Crypt, err)
	}
	return b, nil
}

// DeriveKey turns a pre-shared key into 32 bytes of cipher key as kcptun
// does: PBKDF2 with SHA-1, salt "kcp-go", 4096 iterations.
func DeriveKey(key string) ([]byte, error) {
	return pbkdf2.Key(sha1.New, key, []byte(keySalt), keyIterations, keyLength)
}

// ParseFEC parses "D,P" shard counts into c; "0,0" turns FEC off.
func (c *Config) ParseFEC(s string) error {
	d, p, ok := strings.Cut(s, ",")
	data, err1 := strconv.Atoi(strings.TrimSpace(d))
	parity, err2 := strconv.Atoi(strings.TrimSpace(p))
	if !ok || errors.Join(err1, err2) != nil || data < 0 || parity < 0 {
		return fmt.Errorf("FEC %q: want DATA,PARITY shard counts such as 10,3, or 0,0 for none", s)
	}
	if data == 0 && parity == 0 {
		c.DataShards, c.ParityShards, c.NoFEC = 0, 0, true
		return nil
	}
	if data == 0 || parity == 0 || data+parity > 256 {
		return fmt.Errorf("FEC %q: want at least 1 data and 1 parity shard, at most 256 together, or 0,0 for none", s)
	}
	c.DataShards, c.ParityShards, c.NoFEC = data, parity, false
	return nil
}

// shards returns the FEC shard counts c asks for, after defaults; 0,0 when
// FEC is off.
func (c *Config) shards() (data, parity int) {
	switch {
	case c.NoFEC:
		return 0, 0
	case c.DataShards == 0 && c.ParityShards == 0:
		return DefaultDataShards, DefaultParityShards
	}
	return c.DataShards, c.ParityShards
}

// FECString is the "D,P" form of c's FEC setting, after defaults.
func (c *Config) FECString() string {
	d, p := c.shards()
	return fmt.Sprintf("%d,%d", d, p)
}

// HeaderBytes is what kcp-go puts in each datagram under c besides the
// message bytes, below the IP and UDP headers: the KCP segment header (24),
// the FEC header (8) when FEC is on, and the cipher's nonce and checksum or
// tag when a key is set. A datagram that carries several segments (bundled
// acknowledgements, say) adds 24 bytes for each further segment.
func (c *Config) HeaderBytes() (int, error) {
	cfg, block, err := c.populate()
	if err != nil {
		return 0, err
	}
	return min(cfg.MTU, maxSegment) - segmentPayload(cfg.MTU, !cfg.NoFEC, block), nil
}

// kcp-go's retransmission timer before any round trip is measured.
const (
	initialRTO = 200 * time.Millisecond // IKCP_RTO_DEF
)

// RetryWait is how long kcp-go takes, before it has measured any round
// trip, to send a segment and then retransmit it retries times: its first
// timeout is 200 ms, and each later one grows by half of that under the
// no-delay profiles (fast2, fast3) and by all of it otherwise. Waiting less
// for a reply gives up on a message KCP is still retrying.
func (c *Config) RetryWait(retries int) time.Duration {
	cfg := c.WithDefaults()
	step := initialRTO
	if Profiles[cfg.Profile].NoDelay != 0 {
		step = initialRTO / 2
	}
	var total time.Duration
	rto := initialRTO
	for range retries {
		total += rto
		rto += step
	}
	return total
}
