package fingerprint

import "testing"

func TestOf(t *testing.T) {
	if got := Of("abc"); got != "ba7816bf" { // SHA-256("abc") = ba7816bf8f01cfea...
		t.Errorf("Of(abc) = %q", got)
	}
	if Of("rt-1") == Of("rt-2") {
		t.Error("different secrets, same fingerprint")
	}
	if Of("") != "" {
		t.Error("no secret should have no fingerprint")
	}
}
