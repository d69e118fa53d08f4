"""A Wallaroo Python model (Framework.PYTHON) for a post-processing step after the house-price model.

It takes the model's ``variable`` output (one price per row) and gives the price in thousands
and whether the house counts as expensive. Upload it with its schemas (see README.md):
    orchzip models upload price-band examples/houseprice/price_in_thousands.py --framework python ...
"""

import numpy as np
from mac.types import InferenceData


def process_data(input_data: InferenceData) -> InferenceData:
    prices = input_data["variable"]  # [N, 1]
    return {"price_k": prices / 1000.0, "expensive": (prices[:, 0] > 500_000).astype(np.int64)}
