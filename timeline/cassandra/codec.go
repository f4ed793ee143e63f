package cassandra

import (
	"bytes"
	"encoding/gob"
	"errors"
	"fmt"

	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/wire"
)

// logFormat leads every batch log entry, so that a later encoding can be told
// apart from this one: Open refuses to replay an entry it cannot read rather
// than guess.
const logFormat = 1

// errCorrupt is wrapped by the error of decodeBatch.
var errCorrupt = errors.New("corrupt batch log entry")

// logEntry is what the batch log holds of a Batch: the batch without its
// inbox rows, and the rows as runs that share a message reference (a
// fan-out's rows of one message), each a list of users and of seqs, which
// gob writes as packed varints: a fan-out row takes a quarter of the bytes
// (about 11 for a 64-bit user id) and a fifth of the time to encode that it
// takes as a gob struct.
type logEntry struct {
	Batch *timeline.Batch
	Runs  []rowRun
}

type rowRun struct {
	Conv, ConvSeq, MsgID uint64
	Kind                 wire.Kind
	Users, Seqs          []uint64
}

// encodeBatch encodes b for the batch log: the format byte, then b as a
// logEntry in gob. The entry is read back only to finish or replay a batch,
// so plain code wins over a hand-made format.
func encodeBatch(b *timeline.Batch) ([]byte, error) {
	e := logEntry{Batch: new(timeline.Batch)}
	*e.Batch = *b
	e.Batch.Rows = nil
	for _, r := range b.Rows {
		n := len(e.Runs)
		if n == 0 || e.Runs[n-1].Conv != r.Conv || e.Runs[n-1].ConvSeq != r.ConvSeq ||
			e.Runs[n-1].MsgID != r.MsgID || e.Runs[n-1].Kind != r.Kind {
			e.Runs = append(e.Runs, rowRun{Conv: r.Conv, ConvSeq: r.ConvSeq, MsgID: r.MsgID, Kind: r.Kind})
			n++
		}
		e.Runs[n-1].Users = append(e.Runs[n-1].Users, r.User)
		e.Runs[n-1].Seqs = append(e.Runs[n-1].Seqs, r.Seq)
	}
	var buf bytes.Buffer
	buf.WriteByte(logFormat)
	if err := gob.NewEncoder(&buf).Encode(&e); err != nil {
		return nil, fmt.Errorf("encode batch: %w", err)
	}
	return buf.Bytes(), nil
}

// decodeBatch decodes an entry written by encodeBatch.
func decodeBatch(data []byte) (*timeline.Batch, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: empty", errCorrupt)
	}
	if data[0] != logFormat {
		return nil, fmt.Errorf("%w: unknown format %d", errCorrupt, data[0])
	}
	r := bytes.NewReader(data[1:])
	var e logEntry
	if err := gob.NewDecoder(r).Decode(&e); err != nil {
		return nil, fmt.Errorf("%w: %w", errCorrupt, err)
	}
	if r.Len() > 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", errCorrupt, r.Len())
	}
	if e.Batch == nil {
		e.Batch = new(timeline.Batch)
	}
	for _, run := range e.Runs {
		if len(run.Users) != len(run.Seqs) {
			return nil, fmt.Errorf("%w: a run of %d users and %d seqs", errCorrupt, len(run.Users), len(run.Seqs))
		}
		for i, u := range run.Users {
			e.Batch.Rows = append(e.Batch.Rows, timeline.Row{User: u, Seq: run.Seqs[i], Conv: run.Conv,
				ConvSeq: run.ConvSeq, MsgID: run.MsgID, Kind: run.Kind})
		}
	}
	return e.Batch, nil
}
