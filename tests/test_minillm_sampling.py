"""Teacher-mixed sampling with KV caches, and the Rouge-L / exact-match scoring."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from sequence_kd.evaluation import exact_match, rouge_l
from sequence_kd.sampling import sample, top_p_filter

PROMPTS = [[5, 6, 7], [9], [3, 4, 5, 6, 8]]  # different lengths: left padding and position ids matter
KW = dict(max_new_tokens=12, eos_id=1, pad_id=0, vocab_size=50)


def gpt2(seed: int, layers: int = 2) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=64, n_embd=32, n_layer=layers, n_head=2))


def llama(seed: int) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64))


def draw(model, seed=0, **kw):
    return sample(model, PROMPTS, generator=torch.Generator().manual_seed(seed), **(KW | kw))


@pytest.mark.parametrize("alpha,expected", [(0.0, "student"), (1.0, "teacher")])
def test_mixing_ends_are_pure_student_and_pure_teacher(alpha, expected):
    student, teacher = gpt2(0), gpt2(1, layers=3)
    mixed = draw(student, teacher=teacher, teacher_mix_alpha=alpha)
    pure = draw(student if expected == "student" else teacher)
    assert torch.equal(mixed.tokens, pure.tokens) and torch.equal(mixed.mask, pure.mask)
    assert torch.equal(mixed.sample_logprobs, pure.sample_logprobs)
    # the mixture really is in between: another α samples other tokens
    assert not torch.equal(draw(student, teacher=teacher, teacher_mix_alpha=0.5).tokens, pure.tokens)


@pytest.mark.parametrize("make", [gpt2, llama])
def test_kv_cached_generation_equals_re_encoding(make):
    student, teacher = make(0), make(1)
    cached = draw(student, teacher=teacher, teacher_mix_alpha=0.3)
    full = draw(student, teacher=teacher, teacher_mix_alpha=0.3, use_cache=False)
    assert torch.equal(cached.tokens, full.tokens)
    for name in ("student_logprobs", "teacher_logprobs", "sample_logprobs"):
        assert torch.allclose(getattr(cached, name), getattr(full, name), atol=1e-5)


def test_logprobs_are_those_of_the_unpadded_sequence_and_the_mixture():
    student, teacher = gpt2(0), gpt2(1, layers=3)
    out = draw(student, teacher=teacher, teacher_mix_alpha=0.3)
    assert out.mask[2].sum() < out.mask[0].sum()  # sequence 2 stopped at EOS (id 1); later positions are padding
    assert out.tokens[2, out.mask[2].sum():].eq(0).all()
    student.eval(), teacher.eval()
    for i, prompt in enumerate(PROMPTS):
        response = out.responses()[i]
        ids = torch.tensor([prompt + response])
        span = slice(len(prompt) - 1, ids.shape[1] - 1)  # logits predicting the response
        log_q = F.log_softmax(student(ids).logits[0, span], -1)
        log_p = F.log_softmax(teacher(ids).logits[0, span], -1)
        y = torch.tensor(response)[:, None]
        n = len(response)
        assert torch.allclose(out.student_logprobs[i, :n], log_q.gather(1, y).squeeze(1), atol=1e-5)
        assert torch.allclose(out.teacher_logprobs[i, :n], log_p.gather(1, y).squeeze(1), atol=1e-5)
        mix = torch.log(0.3 * log_p.exp() + 0.7 * log_q.exp()).gather(1, y).squeeze(1)
        assert torch.allclose(out.sample_logprobs[i, :n], mix, atol=1e-5)
    assert student.training is False  # modes are restored (they were eval here)


def test_sampling_restores_training_mode_and_sampling_is_seeded():
    student = gpt2(0)
    student.train()
    a, b = draw(student, seed=3), draw(student, seed=3)
    assert student.training and torch.equal(a.tokens, b.tokens)
    assert not torch.equal(a.tokens, draw(student, seed=4).tokens)


def test_top_p_keeps_the_smallest_set_reaching_the_mass():
    log_probs = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = top_p_filter(log_probs, 0.7).exp()
    assert kept[0].tolist() == pytest.approx([0.5 / 0.8, 0.3 / 0.8, 0.0, 0.0])
    assert top_p_filter(log_probs, 0.4).exp()[0].tolist() == pytest.approx([1.0, 0.0, 0.0, 0.0])
    assert torch.equal(top_p_filter(log_probs, 1.0), log_probs)


def test_temperature_and_top_p_define_the_sampling_logprobs():
    student = gpt2(0)
    out = sample(student, PROMPTS, generator=torch.Generator().manual_seed(0), temperature=0.5, top_p=0.9, **KW)
    student.eval()
    for i, prompt in enumerate(PROMPTS):  # the first sampled token of each prompt
        log_q = F.log_softmax(student(torch.tensor([prompt])).logits[0, -1], -1)[None]  # (1, V)
        expected = top_p_filter(F.log_softmax(log_q / 0.5, -1), 0.9)[0, out.tokens[i, 0]]
        assert out.sample_logprobs[i, 0].item() == pytest.approx(expected.item(), abs=1e-5)
        assert out.student_logprobs[i, 0].item() == pytest.approx(log_q[0, out.tokens[i, 0]].item(), abs=1e-5)


def test_rouge_l_is_stemmed_best_reference_times_100():
    assert rouge_l("the cats are running", ["the cat is running"]) == pytest.approx(100 * 3 / 4)  # cats→cat, running
    assert rouge_l("a b c", ["x y z", "a b c"]) == 100.0  # the best reference counts
    assert rouge_l("a b c", ["x y z"]) == 0.0
    assert exact_match(" To be,  or not ", ["To be, or not"]) == 100.0
    assert exact_match("to be", ["To be"]) == 0.0
