/**
 * TypeBox schemas of the request bodies. Unknown fields are allowed (OpenAI
 * clients send fields we ignore, e.g. `user`, `best_of: 1`); every field we
 * read is type- and range-checked, and a violation is a 400 naming the field.
 */
import { type Static, Type } from 'typebox';

const Int = (o: { minimum?: number; maximum?: number } = {}) => Type.Integer(o);
const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) => Type.Union([t, Type.Null()]);

const Stop = Nullable(Type.Union([Type.String(), Type.Array(Type.String(), { maxItems: 64 })]));

const StreamOptions = Nullable(
  Type.Object({
    include_usage: Type.Optional(Nullable(Type.Boolean())),
    continuous_usage_stats: Type.Optional(Nullable(Type.Boolean())),
  }),
);

/** Sampling and extension fields shared by completions and chat. */
const Common = {
  model: Type.Optional(Nullable(Type.String())),
  temperature: Type.Optional(Nullable(Type.Number({ minimum: 0, maximum: 2 }))),
  top_p: Type.Optional(Nullable(Type.Number({ exclusiveMinimum: 0, maximum: 1 }))),
  top_k: Type.Optional(Nullable(Int())),
  min_p: Type.Optional(Nullable(Type.Number({ minimum: 0, maximum: 1 }))),
  frequency_penalty: Type.Optional(Nullable(Type.Number({ minimum: -2, maximum: 2 }))),
  presence_penalty: Type.Optional(Nullable(Type.Number({ minimum: -2, maximum: 2 }))),
  repetition_penalty: Type.Optional(Nullable(Type.Number({ exclusiveMinimum: 0, maximum: 2 }))),
  seed: Type.Optional(Nullable(Int())),
  stop: Type.Optional(Stop),
  stop_token_ids: Type.Optional(Nullable(Type.Array(Int({ minimum: 0 })))),
  n: Type.Optional(Nullable(Int({ minimum: 1 }))),
  max_tokens: Type.Optional(Nullable(Int({ minimum: 1 }))),
  stream: Type.Optional(Nullable(Type.Boolean())),
  stream_options: Type.Optional(StreamOptions),
  ignore_eos: Type.Optional(Nullable(Type.Boolean())),
  routed_dp_rank: Type.Optional(Nullable(Int())),
};

export const CompletionBody = Type.Object({
  ...Common,
  prompt: Type.Union([
    Type.String(),
    Type.Array(Type.String(), { minItems: 1 }),
    Type.Array(Int({ minimum: 0 }), { minItems: 1 }),
    Type.Array(Type.Array(Int({ minimum: 0 }), { minItems: 1 }), { minItems: 1 }),
  ]),
  logprobs: Type.Optional(Nullable(Int({ minimum: 0, maximum: 20 }))),
  echo: Type.Optional(Nullable(Type.Boolean())),
  best_of: Type.Optional(Nullable(Int({ minimum: 1 }))),
  suffix: Type.Optional(Type.Null()),
});
export type CompletionBody = Static<typeof CompletionBody>;

const ContentPart = Type.Object({ type: Type.String(), text: Type.Optional(Type.String()) });

export const ChatMessage = Type.Object({
  role: Type.String(),
  content: Type.Optional(Type.Union([Type.String(), Type.Null(), Type.Array(ContentPart)])),
  name: Type.Optional(Type.String()),
});

export const ChatBody = Type.Object({
  ...Common,
  messages: Type.Array(ChatMessage, { minItems: 1 }),
  max_completion_tokens: Type.Optional(Nullable(Int({ minimum: 1 }))),
  logprobs: Type.Optional(Nullable(Type.Boolean())),
  top_logprobs: Type.Optional(Nullable(Int({ minimum: 0, maximum: 20 }))),
});
export type ChatBody = Static<typeof ChatBody>;

export const SamplingParamsBody = Type.Object({
  max_new_tokens: Type.Optional(Nullable(Int({ minimum: 1 }))),
  temperature: Type.Optional(Nullable(Type.Number({ minimum: 0 }))),
  top_p: Type.Optional(Nullable(Type.Number({ exclusiveMinimum: 0, maximum: 1 }))),
  top_k: Type.Optional(Nullable(Int())),
  min_p: Type.Optional(Nullable(Type.Number({ minimum: 0, maximum: 1 }))),
  frequency_penalty: Type.Optional(Nullable(Type.Number({ minimum: -2, maximum: 2 }))),
  presence_penalty: Type.Optional(Nullable(Type.Number({ minimum: -2, maximum: 2 }))),
  repetition_penalty: Type.Optional(Nullable(Type.Number({ exclusiveMinimum: 0, maximum: 2 }))),
  stop: Type.Optional(Stop),
  stop_token_ids: Type.Optional(Nullable(Type.Array(Int({ minimum: 0 })))),
  ignore_eos: Type.Optional(Nullable(Type.Boolean())),
  sampling_seed: Type.Optional(Nullable(Int())),
  n: Type.Optional(Nullable(Int({ minimum: 1, maximum: 1 }))),
});

export const GenerateBody = Type.Object({
  text: Type.Optional(Nullable(Type.String())),
  input_ids: Type.Optional(Nullable(Type.Array(Int({ minimum: 0 }), { minItems: 1 }))),
  sampling_params: Type.Optional(Nullable(SamplingParamsBody)),
  stream: Type.Optional(Nullable(Type.Boolean())),
  return_logprob: Type.Optional(Nullable(Type.Boolean())),
  top_logprobs_num: Type.Optional(Nullable(Int({ minimum: 0, maximum: 20 }))),
  logprob_start_len: Type.Optional(Nullable(Int())),
  rid: Type.Optional(Nullable(Type.String())),
  routed_dp_rank: Type.Optional(Nullable(Int())),
  lora_path: Type.Optional(Type.Null()),
});
export type GenerateBody = Static<typeof GenerateBody>;

export const LoadsQuery = Type.Object({
  dp_rank: Type.Optional(Type.String()),
  include: Type.Optional(Type.String()),
  format: Type.Optional(Type.String()),
});
