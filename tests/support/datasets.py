"""Hand-made datasets small enough to check by hand: a scrape with every reject reason (the
same file on both engines) and a split to check metrics on."""

from __future__ import annotations

import numpy as np

from trainer.ml.data import Csr, Dataset

_DMM = "https://www.dmm.co.jp/digital/videoa/-/detail/=/cid="
# A scrape with every reject reason, URL spellings of one video, duplicates and a non-DMM key;
# the comment on each line is its line number in the file and what becomes of it.
EDGE_CASE_LINES = [
    "product_url,reviewer_id,stars",
    f"{_DMM}abc001/,alice,5",  # 2 kept
    "http://dmm.co.jp/digital/videoa/-/detail/=/cid=ABC001,bob,4",  # 3 same video as line 2
    f"{_DMM}abc001/?i3_ref=search&i3_ord=3,carol,4",  # 4 same video
    f"{_DMM}abc002/#reviews,alice,2",  # 5 kept, negative label
    f"{_DMM}abc002/,alice,2",  # 6 duplicate of line 5 (same stars), wins as the later line
    f"{_DMM}abc003/,bob,3",  # 7 conflicting: superseded by line 8
    f"{_DMM}abc003/,bob,5",  # 8 kept
    ",bob,5",  # 9 missing_product_url
    "N/A,bob,5",  # 10 invalid_product_url
    f"{_DMM}abc004/,  ,5",  # 11 missing_reviewer_id
    f"{_DMM}abc004/,dave,",  # 12 missing_stars
    f"{_DMM}abc004/,dave,4.5",  # 13 stars_not_integer
    f"{_DMM}abc004/,dave,6",  # 14 stars_out_of_range
    f"{_DMM}abc004/,dave,0",  # 15 stars_out_of_range
    f"{_DMM}abc004/,dave,★★★",  # 16 stars_not_numeric
    f"{_DMM}abc004/,dave,4.0",  # 17 kept: 4.0 is the integer 4
    f"{_DMM}abc004/,dave,4,extra",  # 18 ragged_line (load)
    "https://example.com/v/9?utm=x,erin,5",  # 19 kept, non-DMM key
]
EDGE_CASE_REJECTS = {
    5: "duplicate",
    7: "conflicting_duplicate",
    9: "missing_product_url",
    10: "invalid_product_url",
    11: "missing_reviewer_id",
    12: "missing_stars",
    13: "stars_not_integer",
    14: "stars_out_of_range",
    15: "stars_out_of_range",
    16: "stars_not_numeric",
    18: "ragged_line",
}


def tiny_dataset() -> Dataset:
    # 2 users, 5 items. User 0 trained on items 0, 1; valid: item 2 and one outside the catalog.
    train_users = np.array([0, 0, 1, 1, 1])
    train_items = np.array([0, 1, 0, 3, 4])
    return Dataset(
        user_ids=["u0", "u1"],
        video_ids=[f"v{i}" for i in range(5)],
        train_users=train_users,
        train_items=train_items,
        train_weights=np.ones(5, np.float32),
        train_tune=np.zeros(5, bool),
        train=Csr.from_pairs(train_users, train_items, 2),
        valid=Csr.from_pairs(np.array([0, 1]), np.array([2, 1]), 2),
        valid_total=np.array([2, 1]),
        negatives=None,
        fingerprint="x",
    )
