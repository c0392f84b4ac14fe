#!/usr/bin/env python3
"""Takes the CPU share (fmoe-run --cpu-experts) apart in a Go execution trace.

Usage: go-trace-share.py TRACE [--go GO]

TRACE is what FMOE_GO_TRACE=FILE made fmoe-run write (or `go test -trace`);
it is read through `go tool trace -d=parsed`, so this runs where Go is (the
dev box), not on the GPU machine. runtime/model marks each share's stages as
regions: share.start (the session's goroutine looks up, pins and binds the
share's experts), share.gateup, share.swiglu and share.down (the share's own
goroutine, each one op of the CPU backend's pool), share.wait (the session's
goroutine waiting for the share after its own work), and logs the share's
expert count (share.experts).

Printed, by the share's kind (ops: three ops on a goroutine of the share's
own; task: one task of the pool, below) and expert count, medians (and p90) in microseconds of:
  start    share.start
  spawn    from share.start's end to share.gateup's begin (the share's
           goroutine created and given a thread)
  gateup, swiglu, down   the three ops
  woken    how many other goroutines came to run during share.gateup (the
           pool's workers), and after how long: first and last (the wake)
  forP     of those, the longest a goroutine was runnable before it ran
           (waiting for a P: every P busy, or the scheduler slow to start one)
  downP    the same during share.down
  wait     share.wait
  total    from share.start's begin to share.down's end

A share handed to the pool as one task (fmoe-run's default since run 30;
FMOE_CPU_SHARE=ops is the old way) has no stages of its own; each worker's
part is a share.task region, so its row gives start (which hands the task
over), woken (parts), first and last (when the first and the last part
began, after share.start's begin), forP (the longest a part's worker sat
runnable before it started), wait, and total (to the last part's end).
With the futex wake the session's goroutine takes part in what is left
when it reaches its wait (a share.join region inside share.wait, not
counted among the parts), so wait includes that work.
"""
import argparse
import bisect
import collections
import re
import shutil
import statistics
import subprocess
import sys

EV = re.compile(r'^M=(-?\d+) P=(-?\d+) G=(-?\d+) (\w+) Time=(\d+)(.*)$')
GO = re.compile(r'GoID=(\d+) (\w+)->(\w+)')
TYPE = re.compile(r'Type="([^"]*)"')
LOG = re.compile(r'Category="share.experts" Message="(\d+)"')


def events(lines):
    """Yields (g, kind, time in ns, rest) for each event line."""
    for ln in lines:
        m = EV.match(ln)
        if m:
            yield int(m.group(3)), m.group(4), int(m.group(5)), m.group(6)


def parse(lines):
    """Regions by name as (g, begin, end), logged counts as (g, time, n), and
    each goroutine's times of becoming Running (sorted)."""
    regions = collections.defaultdict(list)
    open_ = {}
    logs = []
    running = collections.defaultdict(list)
    runnable = {}
    for g, kind, t, rest in events(lines):
        if kind == 'StateTransition':
            m = GO.search(rest)
            if not m:
                continue
            goid = int(m.group(1))
            if m.group(3) == 'Runnable':
                runnable[goid] = t
            elif m.group(3) == 'Running' and m.group(2) != 'Running':
                # With the time it was runnable, waiting for a P (0: it ran
                # without being made runnable first, as from a syscall).
                q = runnable.pop(goid, t) if m.group(2) == 'Runnable' else t
                running[goid].append((t, t - q))
        elif kind in ('RegionBegin', 'RegionEnd'):
            m = TYPE.search(rest)
            if not m or not m.group(1).startswith('share.'):
                continue
            key = (g, m.group(1))
            if kind == 'RegionBegin':
                open_[key] = t
            elif key in open_:
                regions[m.group(1)].append((g, open_.pop(key), t))
        elif kind == 'Log':
            m = LOG.search(rest)
            if m:
                logs.append((g, t, int(m.group(1))))
    for ts in running.values():
        ts.sort()
    return regions, logs, running


def woken(running, own, b, e):
    """For each goroutine other than own that came to run within [b, e],
    its first Running's delay from b and how long it had waited for a P."""
    out = []
    for g, ts in running.items():
        if g == own:
            continue
        i = bisect.bisect_left(ts, (b, -1))
        if i < len(ts) and ts[i][0] <= e:
            out.append((ts[i][0] - b, ts[i][1]))
    return sorted(out)


def ran_after(running, g, t0, t1):
    """How long goroutine g waited for a P before its last start within
    [t0, t1] (0 if it did not start there: it was running already)."""
    ts = running.get(g, [])
    i = bisect.bisect_right(ts, (t1, float('inf'))) - 1
    return ts[i][1] if i >= 0 and ts[i][0] >= t0 else 0


def shares(regions, logs, running):
    """One dict a share: its count, its stages' durations (ns)."""
    starts = sorted(regions['share.start'], key=lambda r: r[1])
    logs = sorted(logs, key=lambda r: r[1])
    by = {name: sorted(regions[name], key=lambda r: r[1]) for name in
          ('share.gateup', 'share.swiglu', 'share.down', 'share.wait')}
    tasks = sorted(regions['share.task'], key=lambda r: r[1])
    out = []
    for i, (g, b, e) in enumerate(starts):
        nxt = starts[i + 1][1] if i + 1 < len(starts) else float('inf')

        def after(name, t0, on=None):
            for r in by[name]:
                if r[1] >= t0 and r[1] < nxt and (on is None or r[0] == on):
                    return r
            return None
        n = next((c for lg, t, c in logs if lg == g and b <= t <= e), None)
        if n is None:
            continue
        wt = after('share.wait', e, g)
        # The share as one task of the pool's workers (FMOE_CPU_SHARE=task):
        # handed over within share.start, so its parts may begin inside it.
        parts = [r for r in tasks if b <= r[1] < nxt]
        if parts:
            s = {'kind': 'task', 'n': n, 'start': e - b, 'first': parts[0][1] - b, 'last': parts[-1][1] - b,
                 'total': max(r[2] for r in parts) - b, 'woken': len(parts),
                 'forP': max(ran_after(running, pg, b, pb) for pg, pb, _ in parts)}
            if wt is not None:
                s['wait'] = wt[2] - wt[1]
            out.append(s)
            continue
        gu = after('share.gateup', e)
        if gu is None:
            continue
        sw = after('share.swiglu', gu[2], gu[0])
        dn = after('share.down', gu[2], gu[0])
        if sw is None or dn is None:
            continue
        wk = woken(running, gu[0], gu[1], gu[2])
        s = {'kind': 'ops', 'n': n, 'start': e - b, 'spawn': gu[1] - e, 'gateup': gu[2] - gu[1],
             'swiglu': sw[2] - sw[1], 'down': dn[2] - dn[1], 'total': dn[2] - b,
             'woken': len(wk)}
        if wk:
            s['first'], s['last'] = wk[0][0], wk[-1][0]
            s['forP'] = max(q for _, q in wk)
        wd = woken(running, dn[0], dn[1], dn[2])
        if wd:
            s['downP'] = max(q for _, q in wd)
        if wt is not None:
            s['wait'] = wt[2] - wt[1]
        out.append(s)
    return out


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def report(ss):
    cols = ['start', 'spawn', 'gateup', 'swiglu', 'down', 'first', 'last', 'forP', 'downP', 'wait', 'total']
    print('share  experts  shares  woken  ' + '  '.join(f'{c:>13}' for c in cols))
    print(' ' * 31 + '  '.join(f'{"med (p90) us":>13}' for _ in cols))
    for kind, n in sorted({(s['kind'], s['n']) for s in ss}):
        grp = [s for s in ss if s['kind'] == kind and s['n'] == n]
        cells = []
        for c in cols:
            xs = [s[c] / 1000 for s in grp if c in s]
            cells.append(f'{statistics.median(xs):6.1f} ({pct(xs, 0.9):5.0f})' if xs else f'{"-":>13}')
        wk = statistics.median(s['woken'] for s in grp)
        print(f'{kind:5s}  {n:7d}  {len(grp):6d}  {wk:5.0f}  ' + '  '.join(cells))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('trace')
    ap.add_argument('--go', default=shutil.which('go') or 'go')
    a = ap.parse_args()
    try:
        p = subprocess.run([a.go, 'tool', 'trace', '-d=parsed', a.trace], capture_output=True, text=True)
    except OSError as e:
        sys.exit(f'go-trace-share.py: running {a.go}: {e}')
    if p.returncode != 0:
        sys.exit(f'go-trace-share.py: {a.trace}: go tool trace failed: {p.stderr.strip()[:300]}')
    ss = shares(*parse(p.stdout.splitlines()))
    if not ss:
        sys.exit(f'go-trace-share.py: {a.trace}: no CPU share in it (no share.* regions: '
                 'was --cpu-experts on, and the trace from FMOE_GO_TRACE?)')
    report(ss)


if __name__ == '__main__':
    main()
