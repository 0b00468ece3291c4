package kv

import (
	"context"
	"time"
)

// Lock is a held lock: a key and a random token. Release and Extend act only while the token
// still matches, so a holder whose lock expired and was taken by another never disturbs the new
// holder.
type Lock struct {
	key     string
	token   string
	backend lockBackend
}

// lockBackend is what a Store does for a Lock.
type lockBackend interface {
	release(ctx context.Context, key, token string) (bool, error)
	extend(ctx context.Context, key, token string, ttl time.Duration) (bool, error)
}

// Key returns the locked key.
func (l *Lock) Key() string { return l.key }

// Token returns the lock's random token (usable as a fencing value in logs).
func (l *Lock) Token() string { return l.token }

// Release frees the lock if this holder still has it; else it returns ErrLockLost, which callers
// that only clean up may ignore.
func (l *Lock) Release(ctx context.Context) error {
	ok, err := l.backend.release(ctx, l.key, l.token)
	if err != nil {
		return err
	}
	if !ok {
		return ErrLockLost
	}
	return nil
}

// Extend sets the lock to expire ttl from now if this holder still has it; else ErrLockLost.
func (l *Lock) Extend(ctx context.Context, ttl time.Duration) error {
	if err := checkTTL(ttl); err != nil {
		return err
	}
	ok, err := l.backend.extend(ctx, l.key, l.token, ttl)
	if err != nil {
		return err
	}
	if !ok {
		return ErrLockLost
	}
	return nil
}
