package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"testing"
)

// FuzzDecode feeds arbitrary bodies to the strict decoder of every request
// type: it never panics, refuses with a 400 BAD_REQUEST, and what it
// accepts has one meaning: encoding the value and decoding that again
// gives the same value.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"owner":1,"name":"lunch","members":[2,3],"open":true}`,
		`{"actor":1,"users":[4,5]}`,
		`{"actor":1,"user":2,"role":"admin"}`,
		`{"actor":1,"user":3,"until_ms":1893456000000}`,
		`{"sender":1,"client_msg_id":"m1","kind":1,"body":"hi"}`,
		`{"client_msg_id":"order-1","body":"your order shipped"}`, `{"client_msg_id":"mod-1"}`,
		`{"actor":1,"name":"ops","announcement":"","avatar_url":null}`,
		`{"device":"phone"}`, `{}`,
		`{"owner":1}{"owner":2}`, `{"owner":"1"}`, `{"OWNER":1}`, `{"owner":1,"owner":2}`, `null`, `[]`, ``,
	} {
		f.Add([]byte(s))
	}
	types := []func() any{
		func() any { return new(CreateGroupRequest) }, func() any { return new(InviteRequest) },
		func() any { return new(KickRequest) }, func() any { return new(SetRoleRequest) },
		func() any { return new(MuteRequest) }, func() any { return new(DismissRequest) },
		func() any { return new(SendRequest) }, func() any { return new(SystemMessageRequest) },
		func() any { return new(RevokeRequest) }, func() any { return new(ProfileRequest) },
		func() any { return new(RecallRequest) },
		func() any { return new(struct{}) },
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, newReq := range types {
			v := newReq()
			err := decodeJSON(b, v)
			if err != nil {
				var ae *apiError
				if !errors.As(err, &ae) || ae.status != http.StatusBadRequest || ae.code.String() != "BAD_REQUEST" {
					t.Fatalf("%T: error %v is not a 400 BAD_REQUEST", v, err)
				}
				continue
			}
			again, err := json.Marshal(v)
			if err != nil {
				t.Fatalf("%T: %v", v, err)
			}
			w := newReq()
			if err := decodeJSON(again, w); err != nil || !reflect.DeepEqual(v, w) {
				t.Fatalf("%T: %s decoded as %+v; re-encoded %s decodes as %+v (%v)", v, b, v, again, w, err)
			}
		}
	})
}

func TestDecodeStrict(t *testing.T) {
	for _, b := range []string{`{"OWNER":1}`, `{"owner":1,"owner":2}`, `null`, `{"owner":1} x`, `{"Owner":1}`} {
		if err := decodeJSON([]byte(b), new(CreateGroupRequest)); err == nil {
			t.Errorf("%s accepted", b)
		}
	}
	var req CreateGroupRequest
	if err := decodeJSON([]byte(` {"owner":1,"members":[2],"name":"x","open":false} `), &req); err != nil || req.Owner != 1 {
		t.Errorf("a good body: %+v %v", req, err)
	}
}
