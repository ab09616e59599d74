package correlate

import "testing"

func TestCanonicalEntities(t *testing.T) {
	for _, c := range []struct {
		got  func() (Entity, bool)
		want string
	}{
		{func() (Entity, bool) { return DeviceName("WORKSTATION5.theshire.local") }, "device:name:workstation5"},
		{func() (Entity, bool) { return DeviceName("workstation5") }, "device:name:workstation5"},
		{func() (Entity, bool) { return UserUPN("Alice@Contoso.COM") }, "user:upn:alice@contoso.com"},
		{func() (Entity, bool) { return UserNT("CONTOSO.corp.local", "Alice") }, `user:nt:contoso\alice`},
		{func() (Entity, bool) { return UserSID("s-1-5-21-1-2-3-500") }, "user:sid:S-1-5-21-1-2-3-500"},
		{func() (Entity, bool) { return FileHash("ABCDEF0123456789ABCDEF0123456789ABCDEF01") }, "file:abcdef0123456789abcdef0123456789abcdef01"},
		{func() (Entity, bool) { return IP("::ffff:10.1.2.3") }, "ip:10.1.2.3"},
		{func() (Entity, bool) { return IP("2001:DB8::1") }, "ip:2001:db8::1"},
		{func() (Entity, bool) { return URL("HTTPS://Evil.Example:443/a?b=1#frag") }, "url:https://evil.example/a?b=1"},
		{func() (Entity, bool) { return URL("evil.example") }, "url:http://evil.example/"},
		{func() (Entity, bool) { return URL("http://evil.example:8080/x") }, "url:http://evil.example:8080/x"},
		{func() (Entity, bool) { return Mailbox("<Bob@Contoso.com>") }, "mailbox:bob@contoso.com"},
		{func() (Entity, bool) { return CloudApp(11161) }, "cloudapp:11161"},
	} {
		e, ok := c.got()
		if !ok || e.Key() != c.want {
			t.Errorf("got %q (%v), want %q", e.Key(), ok, c.want)
		}
	}
	for _, bad := range []func() (Entity, bool){
		func() (Entity, bool) { return FileHash("not-a-hash") },
		func() (Entity, bool) { return IP("300.1.1.1") },
		func() (Entity, bool) { return UserUPN("") },
		func() (Entity, bool) { return DeviceName("10.0.0.1") },
	} {
		if e, ok := bad(); ok {
			t.Errorf("accepted %q", e.Key())
		}
	}
}

func TestWellKnownNeverLink(t *testing.T) {
	for _, e := range []Entity{
		{KindUser, "sid:S-1-5-18"}, {KindUser, "sid:S-1-5-19"}, {KindUser, "sid:S-1-5-20"},
		{KindUser, `nt:nt authority\system`}, {KindUser, `nt:nt authority\local service`}, {KindUser, `nt:nt authority\network service`},
		{KindIP, "0.0.0.0"}, {KindIP, "::"}, {KindIP, "127.0.0.1"}, {KindIP, "::1"},
	} {
		if !WellKnown(e) {
			t.Errorf("%s links", e.Key())
		}
	}
	if WellKnown(Entity{KindIP, "203.0.113.9"}) || WellKnown(Entity{KindUser, `nt:contoso\alice`}) {
		t.Error("ordinary entity treated as well-known")
	}
}

func TestUnmarshalFactsRejectsBadInput(t *testing.T) {
	for _, in := range []string{`not json`, `{"tenant":""}`, `{"tenant":"a\u0000b"}`, `[]`} {
		if _, err := UnmarshalFacts([]byte(in)); err == nil {
			t.Errorf("accepted %q", in)
		}
	}
}
