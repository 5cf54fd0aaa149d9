// The load loop (N concurrent callers for a fixed time) and latency statistics; used in-process and by the HTTP client.
import { rng, type Call, type Procedure, type Workload } from './workload.ts';

export interface PhaseResult {
  ops: number;
  errors: number;
  firstError: string | null;
  elapsedMs: number;
  /** Latency of every completed call, milliseconds. */
  latencies: number[];
}

export interface PhaseOptions {
  workload: Workload;
  procedure: Procedure;
  durationMs: number;
  concurrency: number;
  seed: number;
  /** Runs one call; `caller` (0 ≤ caller < concurrency) identifies the concurrent caller issuing it. */
  invoke: (call: Call, caller: number) => Promise<unknown>;
}

/** `concurrency` callers, each issuing its next call as soon as the previous one returns, until the time is up. */
export async function runPhase({ workload, procedure, durationMs, concurrency, seed, invoke }: PhaseOptions): Promise<PhaseResult> {
  const latencies: number[] = [];
  let errors = 0;
  let firstError: string | null = null;
  const start = performance.now();
  const deadline = start + durationMs;
  const caller = async (index: number) => {
    const random = rng(seed * 1009 + index);
    while (performance.now() < deadline) {
      const call = workload.next(procedure, random, { index, count: concurrency });
      const t = performance.now();
      try {
        await invoke(call, index);
        latencies.push(performance.now() - t);
      } catch (err) {
        errors++;
        firstError ??= err instanceof Error ? `${err.name}: ${err.message}` : String(err);
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, (_, i) => caller(i)));
  return { ops: latencies.length, errors, firstError, elapsedMs: performance.now() - start, latencies };
}

export interface Summary {
  ops: number;
  errors: number;
  opsPerSec: number;
  p50: number;
  p95: number;
  p99: number;
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** Throughput over the summed measured time of several phases, and latency percentiles over all their calls. */
export function summarize(phases: PhaseResult[]): Summary {
  const all = Float64Array.from(phases.flatMap((p) => p.latencies)).sort();
  const ops = phases.reduce((n, p) => n + p.ops, 0);
  const seconds = phases.reduce((n, p) => n + p.elapsedMs, 0) / 1000;
  return {
    ops,
    errors: phases.reduce((n, p) => n + p.errors, 0),
    opsPerSec: seconds > 0 ? ops / seconds : 0,
    p50: percentile(all, 50),
    p95: percentile(all, 95),
    p99: percentile(all, 99),
  };
}
