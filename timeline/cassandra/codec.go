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
// than guess. Format 1 kept the activity moves in the batch; format 2 keeps
// them as moveRuns. Entries of format 1, left by an earlier release that
// stopped with commits in flight, are still read.
const (
	logFormat     = 2
	logFormatGob1 = 1
)

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
	Moves []moveRun
}

type rowRun struct {
	Conv, ConvSeq, MsgID uint64
	Kind                 wire.Kind
	Users, Seqs          []uint64
}

// moveRun is the activity index moves of a batch that share a conversation
// and both times: a send's members move from the group's last message to
// the batch's time. The times are unix milliseconds, all that the store
// writes of them (a zero time comes back zero). As gob structs, a move took
// about 40 bytes, three quarters of a fan-out entry, and most of the time
// to encode it; here it takes its user's varint.
type moveRun struct {
	Conv     uint64
	At, Prev int64
	Users    []uint64
}

// encodeBatch encodes b for the batch log: the format byte, then b as a
// logEntry in gob. The entry is read back only to finish or replay a batch,
// so plain code wins over a hand-made format.
func encodeBatch(b *timeline.Batch) ([]byte, error) {
	e := logEntry{Batch: new(timeline.Batch)}
	*e.Batch = *b
	e.Batch.Rows, e.Batch.Activities = nil, nil
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
	e.Moves = moveRuns(b.Activities)
	var buf bytes.Buffer
	buf.WriteByte(logFormat)
	if err := gob.NewEncoder(&buf).Encode(&e); err != nil {
		return nil, fmt.Errorf("encode batch: %w", err)
	}
	return buf.Bytes(), nil
}

// moveRuns groups moves by conversation and times, in the order each group
// first appears. Decoded, the moves come back in that order rather than
// the batch's: the store writes all of a batch's statements of a partition
// at one timestamp, where their order changes nothing.
func moveRuns(moves []timeline.Activity) []moveRun {
	type runKey struct {
		conv     uint64
		at, prev int64
	}
	var runs []moveRun
	index := make(map[runKey]int)
	for _, a := range moves {
		k := runKey{a.Conv, a.At.UnixMilli(), a.Prev.UnixMilli()}
		i, ok := index[k]
		if !ok {
			i = len(runs)
			index[k] = i
			runs = append(runs, moveRun{Conv: k.conv, At: k.at, Prev: k.prev})
		}
		runs[i].Users = append(runs[i].Users, a.User)
	}
	return runs
}

// decodeBatch decodes an entry written by encodeBatch, or by the encoder of
// format 1.
func decodeBatch(data []byte) (*timeline.Batch, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: empty", errCorrupt)
	}
	if data[0] != logFormat && data[0] != logFormatGob1 {
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
	for _, run := range e.Moves {
		for _, u := range run.Users {
			e.Batch.Activities = append(e.Batch.Activities, timeline.Activity{User: u, Conv: run.Conv,
				At: unixMilli(run.At), Prev: unixMilli(run.Prev)})
		}
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
