/** Learning-rate schedules: pure functions of the step number. */

export type Schedule = (step: number) => number;

export interface CosineScheduleOptions {
  /** Peak learning rate, reached at step `warmup`. */
  lr: number;
  /** Floor of the cosine decay, held after `total`. */
  minLr: number;
  /** Linear warmup length in steps (0 = none). */
  warmup: number;
  /** The step at which the decay reaches minLr (litgpt's lr_decay_iters, TinyLlama's max_iters). */
  total: number;
}

function check(what: string, v: number, integer: boolean): void {
  if (typeof v !== "number" || !Number.isFinite(v) || v < 0 || (integer && !Number.isInteger(v)))
    throw new RangeError(`cosineSchedule: '${what}' must be a finite ${integer ? "integer" : "number"} >= 0, got ${v}`);
}

/**
 * TinyLlama's (litgpt's) get_lr, for 0-based step numbers:
 *   step < warmup:  lr * step / warmup            (so step 0 trains with lr 0, as TinyLlama does)
 *   step > total:   minLr
 *   otherwise:      minLr + 0.5 (1 + cos(pi (step - warmup) / (total - warmup))) (lr - minLr)
 * When total == warmup there is nothing to decay over and every step >= warmup gets minLr.
 */
export function cosineSchedule(o: CosineScheduleOptions): Schedule {
  check("lr", o.lr, false);
  check("minLr", o.minLr, false);
  check("warmup", o.warmup, true);
  check("total", o.total, true);
  if (o.total < o.warmup) throw new RangeError(`cosineSchedule: 'total' (${o.total}) must be >= 'warmup' (${o.warmup})`);
  const { lr, minLr, warmup, total } = o;
  return (step: number): number => {
    if (typeof step !== "number" || !(step >= 0) || !Number.isFinite(step)) throw new RangeError(`schedule: step must be a finite number >= 0, got ${step}`);
    if (step < warmup) return (lr * step) / warmup;
    if (step > total || total === warmup) return minLr;
    const ratio = (step - warmup) / (total - warmup);
    return minLr + 0.5 * (1 + Math.cos(Math.PI * ratio)) * (lr - minLr);
  };
}

/** The same learning rate at every step. */
export function constantSchedule(lr: number): Schedule {
  if (typeof lr !== "number" || !Number.isFinite(lr) || lr < 0) throw new RangeError(`constantSchedule: lr must be a finite number >= 0, got ${lr}`);
  return () => lr;
}
