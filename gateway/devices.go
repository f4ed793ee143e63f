package gateway

import (
	"slices"
	"strings"
	"time"
)

// Device is one of a user's connected devices.
type Device struct {
	ID    string
	Since time.Time // when its connection opened
}

// Devices lists user's authenticated connections, by device id.
func (s *Server) Devices(user uint64) []Device {
	s.mu.RLock()
	list := s.byUser[user]
	out := make([]Device, 0, len(list))
	for _, sess := range list {
		out = append(out, Device{ID: sess.device, Since: time.Unix(0, sess.opened)})
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b Device) int { return strings.Compare(a.ID, b.ID) })
	return out
}
