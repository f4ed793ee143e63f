package inbox

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/inboxd/inboxd/wire"
)

// noticeBody is the JSON body of a KindNotice message.
func noticeBody(n wire.Notice) []byte {
	b, err := json.Marshal(n)
	if err != nil {
		panic(fmt.Sprintf("inbox: marshal notice: %v", err)) // plain data cannot fail
	}
	return b
}

// idList renders ids as "2", "2 and 3" or "2, 3 and 4".
func idList(ids []uint64) string {
	s := idStrings(ids)
	if len(s) <= 1 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " and " + s[len(s)-1]
}

func idStrings(ids []uint64) []string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.FormatUint(id, 10)
	}
	return s
}

// groupName is the name of a group created without one: its first members,
// like "1, 2 and 3", or "1, 2, 3 and others" for more than four.
func groupName(owner uint64, members []uint64) string {
	ids := append([]uint64{owner}, members...)
	if len(ids) > 4 {
		return strings.Join(idStrings(ids[:3]), ", ") + " and others"
	}
	return idList(ids)
}

func muteText(actor uint64, target string, until time.Time) string {
	if until.IsZero() {
		return fmt.Sprintf("%d unmuted %s", actor, target)
	}
	return fmt.Sprintf("%d muted %s until %s", actor, target, until.UTC().Format(time.RFC3339))
}
