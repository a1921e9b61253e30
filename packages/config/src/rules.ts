// Field schemas shared by the model, training and HF configs. Each produces exactly one issue per bad field,
// worded as the rule it enforces ("must be a positive integer (got 0)"), so messages read the same everywhere.
import * as v from 'valibot';

const missing = (issue: v.BaseIssue<unknown>): boolean => issue.received === 'undefined';

function number(rule: string) {
  return v.number((issue) => (missing(issue) ? 'is required' : `${rule} (got ${issue.received})`));
}

function numberRule(rule: string, ok: (n: number) => boolean) {
  return v.pipe(
    number(rule),
    v.check(ok, (issue) => `${rule} (got ${issue.received})`),
  );
}

/** Sizes and counts: 1, 2, 3, ... */
export const positiveInt = () => numberRule('must be a positive integer', (n) => Number.isSafeInteger(n) && n > 0);
/** Ids, seeds, step counts where 0 means "off": 0, 1, 2, ... */
export const nonNegativeInt = () =>
  numberRule('must be a non-negative integer', (n) => Number.isSafeInteger(n) && n >= 0);
/** Rates, epsilons, thetas: finite and > 0. */
export const positive = () => numberRule('must be a finite number > 0', (n) => Number.isFinite(n) && n > 0);
/** Finite and >= 0. */
export const nonNegative = () => numberRule('must be a finite number >= 0', (n) => Number.isFinite(n) && n >= 0);
/** Adam betas: [0, 1). */
export const unitInterval = () => numberRule('must be in [0, 1)', (n) => n >= 0 && n < 1);

export function boolean() {
  return v.boolean((issue) => (missing(issue) ? 'is required' : `must be true or false (got ${issue.received})`));
}

export function oneOf<const T extends readonly [string, ...string[]]>(options: T) {
  const list = options.map((o) => JSON.stringify(o)).join(', ');
  return v.picklist(options, (issue) =>
    missing(issue) ? `is required (one of ${list})` : `must be one of ${list} (got ${issue.received})`,
  );
}

// Object schemas report three things: a missing key (the key's path, received undefined), an unknown key
// (strict objects only, expected never) and a non-object input.
function objectMessage(known: string) {
  return (issue: v.BaseIssue<unknown>): string => {
    if (issue.expected === 'never') return `unknown field (known fields: ${known})`;
    if (issue.path !== undefined && missing(issue)) return 'is required';
    return `must be an object (got ${issue.received})`;
  };
}

/** A strict object: unknown keys are errors (a typo in a config file must not be silently ignored). */
export function strictObject<const E extends v.ObjectEntries>(entries: E) {
  return v.strictObject(entries, objectMessage(Object.keys(entries).join(', ')));
}

/** A loose object: unknown keys pass (HF config.json files carry many we do not use). */
export function looseObject<const E extends v.ObjectEntries>(entries: E) {
  return v.looseObject(entries, objectMessage(Object.keys(entries).join(', ')));
}

/** A rule between fields of one object, reported on `field` (the one a user would change). */
export interface CrossFieldRule<T> {
  readonly field: keyof T & string;
  /** Every field the rule reads; it is skipped if any of them failed its own rule (already reported). */
  readonly reads: readonly (keyof T & string)[];
  readonly ok: (c: T) => boolean;
  readonly message: (c: T) => string;
}

/**
 * Checks cross-field rules in one pass, after the fields' own rules, so one parse reports every problem.
 * (valibot's partialCheck + forward skips a rule whenever an earlier rule's issue landed on a field it reads,
 * which hides real problems as soon as any other field, or an unknown key, is bad.)
 */
export function crossFieldRules<T extends Record<string, unknown>>(rules: readonly CrossFieldRule<T>[]) {
  return v.rawCheck<T>(({ dataset, addIssue }) => {
    const value: unknown = dataset.value;
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return;
    const failed = new Set((dataset.issues ?? []).map((issue) => String(issue.path?.[0]?.key)));
    const c = value as T;
    for (const rule of rules) {
      if (rule.reads.some((f) => failed.has(f) || !(f in c))) continue;
      if (rule.ok(c)) continue;
      addIssue({
        message: rule.message(c),
        path: [{ type: 'object', origin: 'value', input: c, key: rule.field, value: c[rule.field] }],
      });
    }
  });
}
