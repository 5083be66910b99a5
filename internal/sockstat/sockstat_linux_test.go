package sockstat

import "testing"

func TestParseProc(t *testing.T) {
	const table = `   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  123: 0100007F:1770 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4242 2 0000000000000000 17
  124: 0100007F:1771 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4243 2 0000000000000000 0
  bad line
`
	m := map[uint64]uint64{}
	parseProc([]byte(table), m)
	if m[4242] != 17 || m[4243] != 0 || len(m) != 2 {
		t.Errorf("parseProc = %v; want map[4242:17 4243:0]", m)
	}
}
