"""The bandwidths that bound peer-bench's rows, measured now (torch): pinned host->device, device
copy, the CPUs' memory read, and the link and the CPUs' reads at once. Run by scripts/peer-bench.sh;
alone: python3 scripts/peer/ceilings.py."""
import os, time, torch
def rate(f, nbytes, reps=5):
    f(); torch.cuda.synchronize(); t = time.perf_counter()
    for _ in range(reps): f()
    torch.cuda.synchronize(); return nbytes * reps / (time.perf_counter() - t) / 1e9
n = 1 << 30
h = torch.empty(n, dtype=torch.uint8).pin_memory(); d = torch.empty(n, dtype=torch.uint8, device="cuda")
d2 = torch.empty_like(d)
print("pinned host->device %.1f GB/s; device copy (read+write) %.0f GB/s" %
      (rate(lambda: d.copy_(h, non_blocking=True), n), rate(lambda: d2.copy_(d), 2 * n)))
x = torch.ones(1 << 28, dtype=torch.float32)  # 1 GiB in RAM
torch.set_num_threads(os.cpu_count()); x.sum(); t = time.perf_counter()
for _ in range(5): x.sum()
print("CPU memory read (torch sum, %d threads) %.1f GB/s" % (os.cpu_count(), 5 * x.numel() * 4 / (time.perf_counter() - t) / 1e9))
# Both at once (row 2 at K=10 is bound by the link: could CPUs beside it add bandwidth, or do the
# two share the host's memory?): 12 GiB of copies queued, the CPUs summing until the last lands.
s = torch.cuda.Stream(); e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
with torch.cuda.stream(s):
    e0.record(s)
    for _ in range(12): d.copy_(h, non_blocking=True)
    e1.record(s)
t, sums = time.perf_counter(), 0
while not e1.query():
    x.sum(); sums += 1
cpu = sums * x.numel() * 4 / (time.perf_counter() - t) / 1e9
e1.synchronize()
print("together: host->device %.1f GB/s while the CPUs read %.1f GB/s (%d sums)" % (12 * n / e0.elapsed_time(e1) / 1e6, cpu, sums))
