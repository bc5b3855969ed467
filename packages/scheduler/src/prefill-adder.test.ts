import { describe, expect, it } from 'vitest';
import { runningReservation } from './budget.js';
import { ADD_CONTINUE, ADD_NO_TOKEN, ADD_OTHER, PrefillAdder } from './prefill-adder.js';
import { LPM_MAX_QUEUE, WaitingQueue } from './queue.js';
import { Request } from './request.js';

let seq = 0;
function req(promptLen: number, maxNew: number, outputLen = 0): Request {
  const r = new Request(
    { rid: `r${seq}`, promptTokens: [], maxNewTokens: maxNew },
    new Int32Array(promptLen).fill(1),
    maxNew,
    new Int32Array(0),
    seq++,
    0,
  );
  for (let i = 0; i < outputLen; i++) r.appendToken(5);
  return r;
}

describe('PrefillAdder arithmetic (SGLang add_one_req / add_chunked_req, page size 1)', () => {
  it('refuses with NO_TOKEN when input + clipped max_new_tokens reaches the remaining total budget', () => {
    const a = new PrefillAdder();
    a.reset(1000, 300, 10_000, null, 4096); // free 1000, running reservation 300 → rem_total 700
    expect(a.remTotalTokens).toBe(700);
    expect(a.addOneReq(req(100, 500))).toBe(ADD_CONTINUE); // 600 < 700 → admitted; offset 900
    expect(a.remTotalTokens).toBe(100);
    expect(a.curRemTokens).toBe(900);
    expect(a.addOneReq(req(10, 90))).toBe(ADD_NO_TOKEN); // 100 >= 100 → refused before adding
    expect(a.count).toBe(1);
    expect(a.addOneReq(req(50, 49))).toBe(ADD_CONTINUE); // 99 < 100 → admitted; rem_total 1
    expect(a.addOneReq(req(1, 1))).toBe(ADD_NO_TOKEN); // 2 >= 1
    expect(a.count).toBe(2);
    expect(a.inputTokens).toBe(150);
  });

  it('clips max_new_tokens to --clip-max-new-tokens-estimation and subtracts tokens already generated', () => {
    const a = new PrefillAdder();
    a.reset(10_000, 0, 100_000, null, 100);
    a.addOneReq(req(50, 5000));
    expect(a.remTotalTokenOffset).toBe(150);
    const retracted = req(20, 300, 250); // 250 generated, 50 remaining; its fill is prompt only here
    a.addOneReq(retracted);
    expect(a.remTotalTokenOffset).toBe(150 + 20 + 50);
    expect(runningReservation([req(1, 5000), req(1, 30, 10)], 2, 0.5, 100)).toBe((100 + 20) * 0.5);
  });

  it('--max-prefill-tokens: OTHER for a request reaching the input budget unless it is the first', () => {
    const a = new PrefillAdder();
    a.reset(100_000, 0, 300, null, 4096);
    expect(a.addOneReq(req(500, 10))).toBe(ADD_OTHER); // first: admitted even above the budget; then rem_input < 0 → OTHER
    expect(a.count).toBe(1);
    const b = new PrefillAdder();
    b.reset(100_000, 0, 300, null, 4096);
    expect(b.addOneReq(req(200, 10))).toBe(ADD_CONTINUE);
    expect(b.addOneReq(req(100, 10))).toBe(ADD_OTHER); // 100 >= rem_input 100 → refused
    expect(b.count).toBe(1);
  });

  it('--chunked-prefill-size: truncates the request that does not fit the chunk budget and makes it the chunked request', () => {
    const a = new PrefillAdder();
    a.reset(100_000, 0, 16384, 256, 4096);
    expect(a.addOneReq(req(100, 10))).toBe(ADD_CONTINUE);
    const long = req(1000, 10);
    expect(a.addOneReq(long)).toBe(ADD_OTHER); // 156 of it, then the chunk budget is 0
    expect(a.newChunkedReq).toBe(long);
    expect(a.chunkLens.slice(0, a.count)).toEqual([100, 156]);
    // its future decode is not reserved yet
    expect(a.remTotalTokenOffset).toBe(110 + 156);
    // next pass: the continuation takes the chunk budget, min with the KV budget
    long.kvLen = 156;
    const b = new PrefillAdder();
    b.reset(300, 0, 16384, 256, 4096);
    expect(b.addChunkedReq(long)).toBe(true);
    expect(b.chunkLens[0]).toBe(256);
    long.kvLen = 156 + 256;
    const c = new PrefillAdder();
    c.reset(200, 0, 16384, 256, 4096);
    expect(c.addChunkedReq(long)).toBe(true); // KV budget (200) < chunk budget
    expect(c.chunkLens[0]).toBe(200);
    long.kvLen = 1000 - 100;
    const d = new PrefillAdder();
    d.reset(5000, 0, 16384, 256, 4096);
    expect(d.addChunkedReq(long)).toBe(false); // last chunk: reserves its max_new_tokens
    expect(d.remTotalTokenOffset).toBe(100 + 10);
    const e = new PrefillAdder();
    e.reset(10, 50, 16384, 256, 4096);
    expect(e.addChunkedReq(long)).toBe(true); // no KV budget left this pass: not added
    expect(e.count).toBe(0);
  });
});

describe('WaitingQueue', () => {
  it('is a deque with O(1) abort removal and incremental counts', () => {
    const q = new WaitingQueue(2);
    const rs = [req(10, 1), req(20, 1), req(30, 1), req(40, 1)];
    for (const r of rs) q.pushBack(r);
    expect(q.size).toBe(4);
    expect(q.queuedTokens).toBe(100);
    q.remove(rs[0]!);
    q.remove(rs[2]!);
    expect(q.size).toBe(2);
    expect(q.queuedTokens).toBe(60);
    expect(q.peek()).toBe(rs[1]);
    const front = req(5, 1);
    q.pushFront(front);
    expect(q.toArray()).toEqual([front, rs[1], rs[3]]);
    expect(q.popFront()).toBe(front);
    expect(q.popFront()).toBe(rs[1]);
    expect(q.popFront()).toBe(rs[3]);
    expect(q.popFront()).toBeNull();
    expect(q.size).toBe(0);
    expect(q.queuedTokens).toBe(0);
  });

  it('lpm orders by matched prefix (stable), is fcfs without a matcher or above 128 waiting', () => {
    const q = new WaitingQueue();
    const rs = [req(10, 1), req(20, 1), req(30, 1), req(40, 1)];
    for (const r of rs) q.pushBack(r);
    const score = new Map([
      [rs[0]!, 0],
      [rs[1]!, 7],
      [rs[2]!, 3],
      [rs[3]!, 7],
    ]);
    const matcher = { matchPrefixLen: (fill: Int32Array) => score.get(rs.find((r) => r.fill === fill)!)! };
    q.applyPolicy('lpm', null);
    expect(q.toArray()).toEqual(rs);
    q.applyPolicy('fcfs', matcher);
    expect(q.toArray()).toEqual(rs);
    q.applyPolicy('lpm', matcher);
    expect(q.toArray()).toEqual([rs[1], rs[3], rs[2], rs[0]]);
    const big = new WaitingQueue();
    const many = Array.from({ length: LPM_MAX_QUEUE + 1 }, () => req(1, 1));
    for (const r of many) big.pushBack(r);
    big.applyPolicy('lpm', { matchPrefixLen: () => 1 });
    expect(big.toArray()).toEqual(many);
  });
});
