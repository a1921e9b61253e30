import * as v from 'valibot';

/** One problem found in a config: where (a dotted path such as `config.nHeads`) and what rule it broke. */
export interface ConfigIssue {
  readonly path: string;
  readonly message: string;
}

/**
 * Thrown for every invalid config. `issues` holds each problem; the message lists them all, one per line,
 * as `path: rule`, so a user fixing a config file sees everything at once instead of one error per run.
 */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  readonly issues: readonly ConfigIssue[];

  constructor(issues: readonly ConfigIssue[]) {
    super(formatIssues(issues));
    this.issues = issues;
  }
}

function formatIssues(issues: readonly ConfigIssue[]): string {
  const lines = issues.map((i) => `${i.path}: ${i.message}`);
  if (lines.length === 1) return lines[0]!;
  return `${lines.length} config problems:\n  ${lines.join('\n  ')}`;
}

/**
 * Turns valibot issues into a ConfigError. `root` names the object being checked (`config`, `train`,
 * `config.json`); `rename` maps a TypeScript field name to the name the user actually wrote (HF keys).
 */
export function toConfigError(
  issues: readonly v.BaseIssue<unknown>[],
  root: string,
  rename: (key: string) => string = (k) => k,
): ConfigError {
  return new ConfigError(
    issues.map((issue) => {
      const keys = (issue.path ?? []).map((p) => rename(String(p.key)));
      return { path: [root, ...keys].join('.'), message: issue.message };
    }),
  );
}

/** Runs a schema and returns its typed output, or throws a ConfigError listing every issue. */
export function parseWith<S extends v.GenericSchema>(
  schema: S,
  input: unknown,
  root: string,
  rename?: (key: string) => string,
): v.InferOutput<S> {
  // valibot's object schemas accept arrays (typeof 'object'); a config is never one.
  if (Array.isArray(input)) throw new ConfigError([{ path: root, message: 'must be an object (got an array)' }]);
  const result = v.safeParse(schema, input);
  if (!result.success) throw toConfigError(result.issues, root, rename);
  return result.output;
}
