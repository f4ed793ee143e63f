package inbox

import (
	"context"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/inboxd/inboxd/wire"
)

// Profile is a change of a group's profile: a nil field stays as it is, a
// set one replaces it (the empty string clears the announcement or the
// avatar; a name cannot be empty).
type Profile struct {
	Name         *string
	Announcement *string
	AvatarURL    *string
}

// check validates p against the limits of docs/protocol.md.
func (p Profile) check() error {
	fields := []struct {
		name  string
		v     *string
		limit int
		empty bool
	}{
		{"name", p.Name, wire.MaxGroupName, false},
		{"announcement", p.Announcement, wire.MaxAnnouncement, true},
		{"avatar URL", p.AvatarURL, wire.MaxAvatarURL, true},
	}
	set := false
	for _, f := range fields {
		if f.v == nil {
			continue
		}
		set = true
		if len(*f.v) > f.limit || !utf8.ValidString(*f.v) || (*f.v == "" && !f.empty) {
			lo := 0
			if !f.empty {
				lo = 1
			}
			return fmt.Errorf("%w: %s must be valid UTF-8 of %d–%d bytes", ErrInvalid, f.name, lo, f.limit)
		}
	}
	if !set {
		return fmt.Errorf("%w: no profile field to change", ErrInvalid)
	}
	return nil
}

// SetGroupProfile changes conv's name, announcement or avatar URL; the
// owner and admins may. Each field that changes posts its notice
// ("rename", "announcement", "avatar"), in that order; a field set to what
// it is already changes nothing and posts nothing.
func (s *Service) SetGroupProfile(ctx context.Context, actor, conv uint64, p Profile) error {
	if err := p.check(); err != nil {
		return fmt.Errorf("inbox: set profile of %d: %w", conv, err)
	}
	err := s.do(ctx, actor, func(tx *txn) error {
		g, m, err := tx.groupMember(conv, actor)
		if err != nil {
			return err
		}
		if m.Role < wire.RoleAdmin {
			return fmt.Errorf("%w: only the owner and admins change a group's profile", ErrForbidden)
		}
		var notices []wire.Notice
		g = tx.mutable(g)
		if p.Name != nil && *p.Name != g.Name {
			g.Name = *p.Name
			notices = append(notices, wire.Notice{Type: wire.NoticeRename, Actor: actor, Name: g.Name,
				Text: fmt.Sprintf("%d renamed the group to %s", actor, strconv.Quote(g.Name))})
		}
		if p.Announcement != nil && *p.Announcement != g.Announcement {
			g.Announcement = *p.Announcement
			n := wire.Notice{Type: wire.NoticeAnnounce, Actor: actor, Announcement: p.Announcement,
				Text: fmt.Sprintf("%d set the announcement", actor)}
			if g.Announcement == "" {
				n.Text = fmt.Sprintf("%d cleared the announcement", actor)
			}
			notices = append(notices, n)
		}
		if p.AvatarURL != nil && *p.AvatarURL != g.AvatarURL {
			g.AvatarURL = *p.AvatarURL
			n := wire.Notice{Type: wire.NoticeAvatar, Actor: actor, AvatarURL: p.AvatarURL,
				Text: fmt.Sprintf("%d changed the group's avatar", actor)}
			if g.AvatarURL == "" {
				n.Text = fmt.Sprintf("%d removed the group's avatar", actor)
			}
			notices = append(notices, n)
		}
		if len(notices) == 0 {
			return nil
		}
		tx.b.Groups = append(tx.b.Groups, g.Group)
		for _, n := range notices {
			if _, err := tx.post(g, actor, "", wire.KindNotice, noticeBody(n)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("inbox: set profile of %d: %w", conv, err)
	}
	return nil
}
