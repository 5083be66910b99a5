package message

import (
	"testing"

	"github.com/udplab/udplab/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }
