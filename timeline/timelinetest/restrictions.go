package timelinetest

import (
	"cmp"
	"slices"
	"testing"
	"time"

	"github.com/inboxd/inboxd/timeline"
)

func testRestrictions(t *testing.T, s timeline.Store, ids *idGen) {
	rs, ok := s.(timeline.Restrictions)
	if !ok {
		t.Fatalf("%T does not implement timeline.Restrictions", s)
	}
	u1, u2 := ids.id(), ids.id()
	at := func(sec int64) time.Time { return time.Unix(epochMS/1000+sec, 0) }
	put := func(r timeline.Restriction) {
		t.Helper()
		if err := rs.PutRestriction(t.Context(), r); err != nil {
			t.Fatalf("PutRestriction(%+v): %v", r, err)
		}
	}
	check := func(step string, want ...timeline.Restriction) {
		t.Helper()
		all, err := rs.AllRestrictions(t.Context())
		if err != nil {
			t.Fatalf("%s: AllRestrictions: %v", step, err)
		}
		// Other runs and subtests leave their own records: only ours count.
		got := slices.DeleteFunc(all, func(r timeline.Restriction) bool { return r.User != u1 && r.User != u2 })
		order := func(a, b timeline.Restriction) int {
			return cmp.Or(cmp.Compare(a.User, b.User), cmp.Compare(a.Device, b.Device))
		}
		slices.SortFunc(got, order)
		slices.SortFunc(want, order)
		same := len(got) == len(want)
		for i := 0; same && i < len(got); i++ {
			g, w := got[i], want[i]
			same = g.User == w.User && g.Device == w.Device && g.Banned == w.Banned && g.RevokedBefore.Equal(w.RevokedBefore)
		}
		if !same {
			t.Errorf("%s: restrictions %+v, want %+v", step, got, want)
		}
	}
	check("none yet")

	ban := timeline.Restriction{User: u1, Banned: true, RevokedBefore: at(5)}
	phone := timeline.Restriction{User: u1, Device: "phone", RevokedBefore: at(10)}
	phone2 := timeline.Restriction{User: u1, Device: "phone2", RevokedBefore: at(20)} // a key right after phone's
	other := timeline.Restriction{User: u2, Device: "laptop", RevokedBefore: at(30)}
	for _, r := range []timeline.Restriction{ban, phone, phone2, other} {
		put(r)
	}
	check("written", ban, phone, phone2, other)

	// A record is replaced whole: the unban keeps the revocation given.
	unban := timeline.Restriction{User: u1, RevokedBefore: at(5)}
	put(unban)
	lifted := timeline.Restriction{User: u1, Device: "phone"}
	put(lifted)
	check("replaced", unban, lifted, phone2, other)
}
