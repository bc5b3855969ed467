/**
 * The cache-aware policy's approximate prefix tree: a character radix tree
 * whose nodes remember which workers (tenants) saw a text through them and
 * when. It approximates each worker's prefix cache without asking the
 * worker. Each tenant holds at most `maxSize` characters; `evict()` drops the
 * tenant's least recently used leaves until it fits.
 */

class Node {
  /** Edge label from the parent. */
  label: string;
  readonly children = new Map<string, Node>();
  /** tenant → last access (ms). */
  readonly tenants = new Map<string, number>();
  parent: Node | null;
  constructor(label: string, parent: Node | null) {
    this.label = label;
    this.parent = parent;
  }
}

function commonPrefixLength(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a.charCodeAt(i) === b.charCodeAt(i)) i++;
  return i;
}

export interface PrefixMatch {
  /** Characters of the text matched along nodes that `tenant` holds. */
  readonly matchedChars: number;
  /** The tenant holding the longest match (most recent on a tie), or null. */
  readonly tenant: string | null;
}

export class PrefixTree {
  readonly #root = new Node('', null);
  readonly #sizes = new Map<string, number>();

  /** Characters held by each tenant. */
  size(tenant: string): number {
    return this.#sizes.get(tenant) ?? 0;
  }

  tenants(): string[] {
    return [...this.#sizes.keys()];
  }

  /** Records that `tenant` saw `text` at `nowMs`. */
  insert(text: string, tenant: string, nowMs: number): void {
    let node = this.#root;
    this.#touch(node, tenant, nowMs, 0);
    let rest = text;
    while (rest.length > 0) {
      const first = rest[0]!;
      const child = node.children.get(first);
      if (child === undefined) {
        const leaf = new Node(rest, node);
        node.children.set(first, leaf);
        this.#touch(leaf, tenant, nowMs, rest.length);
        return;
      }
      const k = commonPrefixLength(child.label, rest);
      if (k < child.label.length) this.#split(child, k);
      const next = node.children.get(first)!;
      this.#touch(next, tenant, nowMs, next.label.length);
      node = next;
      rest = rest.slice(k);
    }
  }

  /**
   * The longest prefix of `text` held by one of `allowed` (all tenants when
   * null). Characters are counted along the walk, including a partly matched
   * last edge.
   */
  match(text: string, allowed: ReadonlySet<string> | null): PrefixMatch {
    let node = this.#root;
    let rest = text;
    let depth = 0;
    let best: PrefixMatch = { matchedChars: 0, tenant: null };
    while (rest.length > 0) {
      const child = node.children.get(rest[0]!);
      if (child === undefined) break;
      const k = commonPrefixLength(child.label, rest);
      let tenant: string | null = null;
      let newest = Number.NEGATIVE_INFINITY;
      for (const [t, at] of child.tenants) {
        if (allowed !== null && !allowed.has(t)) continue;
        if (at > newest) {
          newest = at;
          tenant = t;
        }
      }
      if (tenant === null) break;
      depth += k;
      best = { matchedChars: depth, tenant };
      if (k < child.label.length) break;
      node = child;
      rest = rest.slice(k);
    }
    return best;
  }

  /** Removes a tenant everywhere (a worker was removed). */
  removeTenant(tenant: string): void {
    const stack: Node[] = [this.#root];
    while (stack.length > 0) {
      const n = stack.pop()!;
      n.tenants.delete(tenant);
      for (const c of n.children.values()) stack.push(c);
    }
    this.#sizes.delete(tenant);
    this.#prune(this.#root);
  }

  /** Evicts each tenant's least recently used leaves until it holds at most `maxSize` characters. */
  evict(maxSize: number): void {
    for (const [tenant, size] of this.#sizes) {
      if (size <= maxSize) continue;
      let left = size;
      while (left > maxSize) {
        const leaves = this.#tenantLeaves(tenant).sort(
          (a, b) => a.tenants.get(tenant)! - b.tenants.get(tenant)!,
        );
        if (leaves.length === 0) break;
        for (const leaf of leaves) {
          if (left <= maxSize) break;
          leaf.tenants.delete(tenant);
          left -= leaf.label.length;
        }
      }
      this.#sizes.set(tenant, Math.max(0, left));
    }
    this.#prune(this.#root);
  }

  #touch(node: Node, tenant: string, nowMs: number, chars: number): void {
    if (!node.tenants.has(tenant)) this.#sizes.set(tenant, (this.#sizes.get(tenant) ?? 0) + chars);
    node.tenants.set(tenant, nowMs);
  }

  /** Splits `child`'s edge after `k` characters; the upper part keeps the tenants. */
  #split(child: Node, k: number): void {
    const parent = child.parent!;
    const upper = new Node(child.label.slice(0, k), parent);
    for (const [t, at] of child.tenants) upper.tenants.set(t, at);
    parent.children.set(upper.label[0]!, upper);
    child.label = child.label.slice(k);
    child.parent = upper;
    upper.children.set(child.label[0]!, child);
  }

  /** Nodes holding `tenant` none of whose children hold it. */
  #tenantLeaves(tenant: string): Node[] {
    const out: Node[] = [];
    const stack: Node[] = [...this.#root.children.values()];
    while (stack.length > 0) {
      const n = stack.pop()!;
      if (!n.tenants.has(tenant)) continue;
      let leaf = true;
      for (const c of n.children.values()) {
        if (c.tenants.has(tenant)) {
          leaf = false;
          stack.push(c);
        }
      }
      if (leaf) out.push(n);
    }
    return out;
  }

  /** Drops subtrees no tenant holds. */
  #prune(node: Node): void {
    for (const [key, c] of node.children) {
      this.#prune(c);
      if (c.tenants.size === 0 && c.children.size === 0) node.children.delete(key);
    }
  }
}
