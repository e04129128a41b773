package guest

import (
	"bytes"
	"crypto/rand"
	"io"
	"net/http"
	"testing"
	"time"
)

// TestNetOffloadKVM: apps/httpd on Amber's virtio-net device and the
// user-mode network, with the guest taking checksum offload (CSUM,
// GUEST_CSUM) and, in a second VM, with the network service told to
// check and compute every checksum itself (AMBER_NET_OFFLOAD=off, as
// before the driver took them). In each, a 2 MiB random body echoed
// through the forward comes back byte for byte, and the device's
// counters say whether it completed checksums for the guest (only with
// the offload on). The echo's rate in each is logged (nested figures:
// docs/benchmarks.md).
func TestNetOffloadKVM(t *testing.T) {
	needKVM(t)
	payload := make([]byte, 2<<20)
	rand.Read(payload)
	for _, mode := range []string{"on", "off"} {
		t.Run("offload-"+mode, func(t *testing.T) {
			v := startOffloadVM(t, "AMBER_NET_OFFLOAD="+mode)
			c := &http.Client{Timeout: 10 * time.Minute}
			start := time.Now()
			resp, err := c.Post(v.base+"/echo", "application/octet-stream", bytes.NewReader(payload))
			if err != nil {
				t.Fatal(err)
			}
			echo, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			took := time.Since(start)
			if err != nil || !bytes.Equal(echo, payload) {
				t.Fatalf("echo of %d bytes: %d back (equal %v), %v", len(payload), len(echo), bytes.Equal(echo, payload), err)
			}
			var m struct {
				Devices map[string]map[string]uint64 `json:"devices"`
			}
			if err := v.api.Do("GET", "/metrics", nil, &m); err != nil {
				t.Fatal(err)
			}
			d := m.Devices["virtio-net"]
			if d["features"]&3 != 3 {
				t.Errorf("features %#x: the guest did not take CSUM and GUEST_CSUM", d["features"])
			}
			if sums := d["txChecksums"]; (mode == "on") != (sums > 0) {
				t.Errorf("offload %s: the device completed %d checksums", mode, sums)
			}
			t.Logf("offload %s: echo of %d bytes each way in %v (%.2f MB/s each way); device %v", mode, len(payload), took, float64(len(payload))/took.Seconds()/1e6, d)
		})
	}
}

// startOffloadVM boots apps/httpd as startHTTPDVM does, with env for the
// program, and waits for its first answer patiently.
func startOffloadVM(t *testing.T, env ...string) *httpdVM {
	t.Helper()
	var flags []string
	for _, e := range env {
		flags = append(flags, "--env", e)
	}
	v, start := launchHTTPDVM(t, flags...)
	// One patient attempt at a time: nested on a loaded host a first
	// answer can take longer than firstAnswer's attempts wait.
	c := &http.Client{Timeout: time.Minute, Transport: &http.Transport{DisableKeepAlives: true}}
	for deadline := start.Add(15 * time.Minute); ; time.Sleep(time.Second) {
		resp, err := c.Get(v.base + "/")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			break
		}
		select {
		case err := <-v.done:
			v.done <- err
			t.Fatalf("vmm exited (%v) before answering\n%s", err, v.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("apps/httpd through the forward: no answer: %v\nvmm output:\n%s", err, v.out.String())
		}
	}
	return v
}
