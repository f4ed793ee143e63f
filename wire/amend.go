package wire

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Amend is the JSON body of a KindRecall or KindEdit entry: which message of
// the conversation it changes, and for an edit the new body
// (docs/protocol.md, "Recall and edit"). Fields may be added; a client
// ignores those it does not know.
type Amend struct {
	ConvSeq uint64 `json:"conv_seq"` // the message recalled or edited
	MsgID   uint64 `json:"msg_id"`   // its msg_id
	Actor   uint64 `json:"actor"`    // who recalled or edited it, also the entry's sender
	// Body is an edit's new body, base64 in JSON. A recall of the message
	// later removes it from every edit entry (which is then served with
	// Message.recalled set).
	Body []byte `json:"body,omitempty"`
	// Prev is, for an edit, the conv_seq of the message's previous edit
	// entry, 0 for the first edit.
	Prev uint64 `json:"prev,omitempty"`
}

// ErrAmend is wrapped by the errors of ParseAmend.
var ErrAmend = errors.New("wire: malformed amend body")

// ParseAmend decodes the body of a KindRecall or KindEdit entry.
func ParseAmend(body []byte) (Amend, error) {
	var a Amend
	if err := json.Unmarshal(body, &a); err != nil {
		return Amend{}, fmt.Errorf("%w: %w", ErrAmend, err)
	}
	if a.ConvSeq == 0 {
		return Amend{}, fmt.Errorf("%w: no conv_seq", ErrAmend)
	}
	return a, nil
}

// Marshal encodes a as an entry body.
func (a Amend) Marshal() []byte {
	b, err := json.Marshal(a)
	if err != nil {
		panic(fmt.Sprintf("wire: marshal amend: %v", err)) // a struct of numbers and bytes always encodes
	}
	return b
}
