package relay_test

import (
	"fmt"
	"testing"

	"github.com/inboxd/inboxd/client"
)

// BenchmarkSend: one device's SENDs, one at a time, to a group of two
// members (one per node) whose conversation is on node 1: from a device
// on node 1 (local) and from one on node 0 (forwarded over peer). The
// difference is the cost of a forward: the device node's committer
// refusing it, and the peer round trip. Run with -benchtime 2000x: the
// default runs few SENDs.
func BenchmarkSend(b *testing.B) {
	for _, tt := range []struct {
		name   string
		sender int // index in the devices: 0 is on node 0, 1 on node 1
	}{{"local", 1}, {"forwarded", 0}} {
		b.Run(tt.name, func(b *testing.B) {
			c := startCluster(b)
			devs, convs := c.groups(1, client.Config{})
			d, conv := devs[tt.sender], convs[1]
			b.ResetTimer()
			for i := range b.N {
				id := fmt.Sprint(tt.name, i)
				if _, err := d.c.Send(ctxT(b), conv, id, 1, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
