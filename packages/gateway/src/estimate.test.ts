import { describe, expect, it } from 'vitest';
import { estimateRequestTokens, requestText, wordCountEstimate } from './estimate.js';

describe('token estimates', () => {
  it("SGLang's word estimate: max(1, ceil(words × 1.3)) in double precision", () => {
    expect(wordCountEstimate('')).toBe(1);
    expect(wordCountEstimate('one')).toBe(2);
    expect(wordCountEstimate('a b c')).toBe(4);
    expect(wordCountEstimate('a  b\tc\nd')).toBe(6);
    expect(wordCountEstimate(Array(10).fill('w').join(' '))).toBe(13);
  });

  it('counts token ids exactly and sums batches', () => {
    expect(estimateRequestTokens({ prompt: [1, 2, 3, 4, 5] }, null)).toBe(5);
    expect(estimateRequestTokens({ input_ids: [9, 9] }, null)).toBe(2);
    expect(estimateRequestTokens({ prompt: ['a b c', 'a b c d'] }, null)).toBe(10);
    expect(estimateRequestTokens({ prompt: [[1, 2], [3]] }, null)).toBe(3);
  });

  it('uses the tokenizer when given one (text and chat)', () => {
    const counter = {
      countText: (t: string) => t.length,
      countChat: (m: ReadonlyArray<{ content: string }>) => 100 + m.length,
    };
    expect(estimateRequestTokens({ prompt: 'hello' }, counter)).toBe(5);
    expect(estimateRequestTokens({ text: 'hi' }, counter)).toBe(2);
    expect(
      estimateRequestTokens(
        {
          messages: [
            { role: 'user', content: 'x' },
            { role: 'assistant', content: 'y' },
          ],
        },
        counter,
      ),
    ).toBe(102);
  });

  it('chat without a tokenizer counts the words of every message, text parts included', () => {
    const body = {
      messages: [
        { role: 'system', content: 'be brief' },
        { role: 'user', content: [{ type: 'text', text: 'two words' }] },
      ],
    };
    expect(estimateRequestTokens(body, null)).toBe(wordCountEstimate('be brief two words'));
    expect(requestText(body)).toBe('system:be brief\nuser:two words\n');
  });

  it('anything unreadable is 1', () => {
    expect(estimateRequestTokens(null, null)).toBe(1);
    expect(estimateRequestTokens({}, null)).toBe(1);
  });
});
