"""Progress in words: the stage, epoch k of N, elapsed time and the time left from the measured pace."""
from engine.jobs import clock, describe, eta


def test_a_report_says_the_stage_and_how_far_into_it():
    assert describe({"stage": "train", "epoch_of": "3 of 30"}) == "train · epoch 3 of 30"
    end = {"stage": "train", "epoch": 3, "epochs": 30, "loss": 0.25, "valid_ndcg@10": 0.05, "seconds": 9.0}
    assert describe(end) == "train · epoch 3 of 30 done · loss 0.2500 · valid_ndcg@10 0.0500"
    assert describe(end, figures=False) == "train · epoch 3 of 30 done"
    assert describe({"stage": "embedding item texts", "texts": "512/38246"}, figures=False) == \
        "embedding item texts · texts 512/38246"


def test_the_time_left_follows_the_pace_so_far():
    assert eta(75, 60, 0.25, early_stopping=False) == "1:15 elapsed · about 3:00 left in this stage"
    assert eta(75, 60, 0.5, early_stopping=True).endswith("about 1:00 left in this stage at most (early stopping "
                                                          "may end it sooner)")
    assert eta(10, 5, 0.0, early_stopping=True) == "0:10 elapsed"  # no pace yet: no guess
    assert eta(10, 5, 1.0, early_stopping=False) == "0:10 elapsed"
    assert clock(3725) == "1:02:05" and clock(59.6) == "1:00"
