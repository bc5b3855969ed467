/**
 * Python's number formatting, so that the printed table and the JSONL line
 * read exactly like bench_serving's (`str(float)`, `'{:.2f}'`, `json.dumps`).
 */

/** `repr(float(x))`: shortest round-trip digits, `.0` kept on integral values, `1e-05` style exponents. */
export function pyFloatRepr(x: number): string {
  if (Number.isNaN(x)) return 'nan';
  if (x === Number.POSITIVE_INFINITY) return 'inf';
  if (x === Number.NEGATIVE_INFINITY) return '-inf';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const [mant, expStr] = x.toExponential().split('e') as [string, string];
  const exp = Number(expStr);
  const neg = mant.startsWith('-');
  const digits = mant.replace('-', '').replace('.', '');
  const sign = neg ? '-' : '';
  if (exp >= -5 && exp < 16) {
    // Python switches to scientific notation below 1e-4 (exp < -4) and at 1e16.
    if (exp < -4) return sciRepr(sign, digits, exp);
    if (exp >= digits.length - 1) return `${sign}${digits}${'0'.repeat(exp - digits.length + 1)}.0`;
    if (exp >= 0) return `${sign}${digits.slice(0, exp + 1)}.${digits.slice(exp + 1)}`;
    return `${sign}0.${'0'.repeat(-exp - 1)}${digits}`;
  }
  return sciRepr(sign, digits, exp);
}

function sciRepr(sign: string, digits: string, exp: number): string {
  const m = digits.length === 1 ? digits : `${digits[0]}.${digits.slice(1)}`;
  const e = Math.abs(exp).toString().padStart(2, '0');
  return `${sign}${m}e${exp < 0 ? '-' : '+'}${e}`;
}

/**
 * `format(x, '.{d}f')`: fixed notation rounded half-to-even on the exact
 * binary value (JavaScript's `toFixed` rounds exact ties up instead).
 */
export function pyFixed(x: number, d: number): string {
  if (Number.isNaN(x)) return 'nan';
  if (!Number.isFinite(x)) return x > 0 ? 'inf' : '-inf';
  if (Math.abs(x) >= 1e21) return BigInt(Math.round(x)).toString() + (d > 0 ? `.${'0'.repeat(d)}` : '');
  const js = x.toFixed(d);
  const exact = Math.abs(x).toFixed(Math.min(100, d + 40));
  const dot = exact.indexOf('.');
  if (!/^50*$/.test(exact.slice(dot + 1 + d))) return js;
  // An exact tie: toFixed rounded up in magnitude; Python rounds half to even.
  const truncated = d === 0 ? exact.slice(0, dot) : exact.slice(0, dot + 1 + d);
  const last = Number(truncated[truncated.length - 1]);
  if (last % 2 === 1) return js;
  return (x < 0 ? '-' : '') + truncated;
}

/** `'{:<w}'.format(v)` for a string. */
export function ljust(s: string, w: number): string {
  return s.length >= w ? s : s + ' '.repeat(w - s.length);
}

/** `'{s:{c}^{n}}'.format(...)`: Python's format centering puts the odd pad character on the right. */
export function pyCenter(s: string, n: number, fill: string): string {
  if (s.length >= n) return s;
  const pad = n - s.length;
  const left = Math.floor(pad / 2);
  return fill.repeat(left) + s + fill.repeat(pad - left);
}

/** A number that `pyJsonDumps` writes as a Python float (`3.0`, not `3`). */
export class PyFloat {
  constructor(readonly value: number) {}
}

/**
 * `json.dumps(obj)` with Python's defaults: `", "` and `": "` separators,
 * `Infinity` / `NaN` for non-finite floats, `ensure_ascii`. Plain numbers
 * are written as ints when integral and as Python floats otherwise; wrap a
 * value in {@link PyFloat} to force float notation.
 */
export function pyJsonDumps(v: unknown): string {
  if (v === null || v === undefined) return 'null';
  if (v instanceof PyFloat) return pyJsonFloat(v.value);
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : pyJsonFloat(v);
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (typeof v === 'string') return pyJsonString(v);
  if (Array.isArray(v)) return `[${v.map(pyJsonDumps).join(', ')}]`;
  if (typeof v === 'object') {
    const parts: string[] = [];
    for (const [k, val] of Object.entries(v as Record<string, unknown>)) {
      if (val === undefined) continue;
      parts.push(`${pyJsonString(k)}: ${pyJsonDumps(val)}`);
    }
    return `{${parts.join(', ')}}`;
  }
  return 'null';
}

function pyJsonFloat(x: number): string {
  if (Number.isNaN(x)) return 'NaN';
  if (x === Number.POSITIVE_INFINITY) return 'Infinity';
  if (x === Number.NEGATIVE_INFINITY) return '-Infinity';
  return pyFloatRepr(x);
}

function pyJsonString(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (ch === '"') out += '\\"';
    else if (ch === '\\') out += '\\\\';
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (ch === '\b') out += '\\b';
    else if (ch === '\f') out += '\\f';
    else if (c < 0x20 || (c >= 0x7f && c <= 0xffff)) out += `\\u${c.toString(16).padStart(4, '0')}`;
    else if (c > 0xffff) {
      const v = c - 0x10000;
      out += `\\u${(0xd800 + (v >> 10)).toString(16)}\\u${(0xdc00 + (v & 0x3ff)).toString(16)}`;
    } else out += ch;
  }
  return `${out}"`;
}

/** `JSON.parse` that also accepts Python's bare `Infinity`, `-Infinity` and `NaN` tokens. */
export function parsePyJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    // Replace the tokens outside strings with sentinels, then revive them.
    let out = '';
    let inStr = false;
    for (let i = 0; i < text.length; i++) {
      const ch = text[i]!;
      if (inStr) {
        out += ch;
        if (ch === '\\') {
          out += text[i + 1] ?? '';
          i++;
        } else if (ch === '"') inStr = false;
        continue;
      }
      if (ch === '"') {
        inStr = true;
        out += ch;
      } else if (text.startsWith('-Infinity', i)) {
        out += '"__py_-inf__"';
        i += 8;
      } else if (text.startsWith('Infinity', i)) {
        out += '"__py_inf__"';
        i += 7;
      } else if (text.startsWith('NaN', i)) {
        out += '"__py_nan__"';
        i += 2;
      } else out += ch;
    }
    return JSON.parse(out, (_k, v) =>
      v === '__py_inf__'
        ? Number.POSITIVE_INFINITY
        : v === '__py_-inf__'
          ? Number.NEGATIVE_INFINITY
          : v === '__py_nan__'
            ? Number.NaN
            : v,
    );
  }
}
