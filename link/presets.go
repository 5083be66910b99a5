package link

// Preset is a named link with the reason for its numbers.
type Preset struct {
	Link   string // in the link grammar
	About  string // what it models
	Source string // where the numbers come from
}

// Presets are links people meet. Delays are one way (half the round trip);
// where up and down differ, the access link's asymmetry is kept.
var Presets = map[string]Preset{
	"lan": {
		Link:   "delay=250us,jitter=50us",
		About:  "switched Ethernet: 0.5 ms round trip, no loss",
		Source: "typical gigabit LAN ping, 0.2-1 ms",
	},
	"wifi": {
		Link:   "delay=3ms,jitter=2ms,loss=0.1%",
		About:  "a good home Wi-Fi hop: 6 ms round trip, rare loss",
		Source: "typical 802.11ac ping to the access point, 2-10 ms",
	},
	"lossy-wifi": {
		Link:   "delay=5ms,jitter=5ms,loss=2%,burst=1%/30%",
		About:  "congested or distant Wi-Fi: 10 ms round trip, 2% random loss plus bursts of about 3 packets",
		Source: "802.11 under contention; bursts follow netem's gemodel with mean burst 1/r",
	},
	"lte": {
		Link:   "delay=25ms,jitter=8ms,loss=0.5%,up:rate=5mbit,down:rate=20mbit",
		About:  "4G/LTE: 50 ms round trip, 20 Mbit/s down, 5 Mbit/s up",
		Source: "Chrome DevTools and Lighthouse mobile throttling profiles; OpenSignal LTE latency reports (40-60 ms)",
	},
	"3g": {
		Link:   "delay=100ms,jitter=30ms,loss=1%,up:rate=750kbit,down:rate=1600kbit",
		About:  "3G: 200 ms round trip, 1.6 Mbit/s down, 750 kbit/s up",
		Source: "Chrome DevTools 'Slow 4G'/'Good 3G' throttling and Lighthouse's mobile profile (150 ms RTT, 1.6 Mbit/s down, 750 kbit/s up)",
	},
	"satellite": {
		Link:   "delay=300ms,jitter=10ms,loss=0.5%,up:rate=3mbit,down:rate=25mbit",
		About:  "geostationary satellite broadband: 600 ms round trip",
		Source: "physics (35,786 km orbit: at least 240 ms ground-satellite-ground each way) and the FCC's Measuring Broadband America reports (about 600 ms)",
	},
	"intercontinental": {
		Link:   "delay=130ms,jitter=2ms,loss=0.1%",
		About:  "London to Sydney over fibre: 260 ms round trip",
		Source: "WonderNetwork's global ping statistics between London and Sydney",
	},
}
