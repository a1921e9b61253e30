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

/**
 * Guards a cross-field rule: it only applies once every field it reads is a valid positive integer, since
 * valibot runs cross-field checks even when a field failed its own rule (that rule already reported it).
 */
export function whenIntegers(values: readonly number[], rule: () => boolean): boolean {
  return !values.every((n) => Number.isSafeInteger(n) && n >= 0) || rule();
}
