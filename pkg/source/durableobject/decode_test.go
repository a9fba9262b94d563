package durableobject_test

import (
	"strings"
	"testing"

	"github.com/cfbackup/cfbackup/pkg/source/durableobject"
)

func TestDecodeItem(t *testing.T) {
	const hdr = `{"t":"header","format":"cfbackup-do/1","id":"ab","backend":"sqlite","alarm":null,"time":1}` + "\n"
	good := hdr + `{"t":"kv","k":"a","v":1}` + "\n" + `{"t":"table","name":"e","sql":"CREATE TABLE e(x)","cols":["x"]}` + "\n" +
		`{"t":"row","table":"e","v":[1]}` + "\n" + `{"t":"row","table":"e","v":[2]}` + "\n" +
		`{"t":"schema","type":"index","name":"i","sql":"CREATE INDEX i ON e(x)"}` + "\n" +
		`{"t":"end","kv":1,"tables":1,"rows":2,"schema":1}` + "\n"
	c, end, err := durableobject.DecodeItem(strings.NewReader(good))
	if err != nil || c.KV != 1 || c.Rows != 2 || end.Rows != 2 {
		t.Fatalf("good item: %+v %+v %v", c, end, err)
	}
	for name, bad := range map[string]string{
		"empty":          "",
		"no header":      `{"t":"kv","k":"a","v":1}` + "\n" + `{"t":"end","kv":1}` + "\n",
		"other format":   strings.Replace(hdr, "cfbackup-do/1", "cfbackup-do/9", 1) + `{"t":"end"}` + "\n",
		"no end":         hdr + `{"t":"kv","k":"a","v":1}` + "\n",
		"truncated":      hdr + `{"t":"kv","k":"a","v":1}` + "\n" + `{"t":"end","kv":1`,
		"bad json":       hdr + `{"t":"kv","k":"a","v":}` + "\n" + `{"t":"end","kv":1}` + "\n",
		"count mismatch": hdr + `{"t":"kv","k":"a","v":1}` + "\n" + `{"t":"end","kv":2}` + "\n",
		"after end":      hdr + `{"t":"end"}` + "\n" + `{"t":"kv","k":"a","v":1}` + "\n",
		"unknown line":   hdr + `{"t":"next","cursor":"x"}` + "\n" + `{"t":"end"}` + "\n",
	} {
		if _, _, err := durableobject.DecodeItem(strings.NewReader(bad)); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
}

func TestScratchWorkerURL(t *testing.T) {
	for _, ok := range []string{"http://127.0.0.1:8787", "http://localhost:8787/", "http://[::1]:9000"} {
		if _, err := durableobject.ScratchWorkerURL(ok, "https://app.example.workers.dev"); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"https://app.example.workers.dev", "http://10.0.0.5:8787", "127.0.0.1:8787", "ftp://127.0.0.1", "http://127.0.0.1:8787"} {
		if _, err := durableobject.ScratchWorkerURL(bad, "http://127.0.0.1:8787/"); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}
