"""Clustering scores: B-cubed and ARI on cases whose answers are known."""

from hypothesis import given, strategies as st

from pipeline.evaluate import adjusted_rand_index, bcubed

labels = st.lists(st.integers(0, 5), min_size=2, max_size=40)


def as_map(values):
    return {str(i): v for i, v in enumerate(values)}


@given(labels)
def test_identical_clusterings_score_one(values):
    clustering = as_map(values)
    assert bcubed(clustering, clustering) == (1.0, 1.0, 1.0)
    assert adjusted_rand_index(clustering, clustering) == 1.0


def test_everything_in_one_cluster_has_full_recall_and_low_precision():
    gold = as_map([0, 0, 1, 1])
    precision, recall, f1 = bcubed(as_map([9, 9, 9, 9]), gold)
    assert recall == 1.0 and precision == 0.5 and abs(f1 - 2 / 3) < 1e-9


def test_all_singletons_have_full_precision():
    gold = as_map([0, 0, 0, 1])
    precision, recall, _ = bcubed(as_map([0, 1, 2, 3]), gold)
    assert precision == 1.0
    assert abs(recall - (1 / 3 * 3 + 1) / 4) < 1e-9


def test_ari_of_a_known_case():
    # sklearn.metrics.adjusted_rand_score([0,0,1,1],[0,0,1,2]) == 0.5714285714285715
    assert abs(adjusted_rand_index(as_map([0, 0, 1, 2]), as_map([0, 0, 1, 1])) - 0.5714285714285715) < 1e-12


@given(labels, labels)
def test_ari_is_symmetric(left, right):
    size = min(len(left), len(right))
    a, b = as_map(left[:size]), as_map(right[:size])
    assert abs(adjusted_rand_index(a, b) - adjusted_rand_index(b, a)) < 1e-9
