package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// signalContext is cancelled by the first Ctrl-C or SIGTERM: the work stops at its next check
// and removes its partial output. A second signal ends the process at once (exit 128+signal),
// even if it is stuck in a read that cannot be interrupted (a stalled network disk); the
// partial folder that leaves is removed by the next run, which can prove its owner dead.
func signalContext() (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		cause := context.Cause(ctx)
		// A signal's cause also matches errors.Is(context.Canceled); stop's cause is exactly it.
		if cause == context.Canceled {
			return // stopped by the command finishing, not by a signal
		}
		again := make(chan os.Signal, 1)
		signal.Notify(again, os.Interrupt, syscall.SIGTERM)
		fmt.Fprintf(os.Stderr, "fmoe-pack: %v: stopping and removing the partial output (send it again to quit at once)\n", cause)
		s := <-again
		fmt.Fprintf(os.Stderr, "fmoe-pack: %v again: quitting now\n", s)
		code := 1
		if n, ok := s.(syscall.Signal); ok {
			code = 128 + int(n)
		}
		os.Exit(code)
	}()
	return ctx, stop
}
