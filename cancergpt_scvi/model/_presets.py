"""Architecture presets of CancerGPTModel."""

#: ``release``: the published CancerGPT size. ``cpu-small`` / ``cpu-base``: sizes that train
#: in minutes on a laptop CPU.
PRESETS: dict[str, dict] = {
    "release": {
        "embed_dim": 256,
        "n_layers": 6,
        "n_heads": 8,
        "ffn_dim": 512,
        "dropout": 0.2,
        "max_seq_len": 1200,
        "n_bins": 51,
    },
    "cpu-base": {
        "embed_dim": 128,
        "n_layers": 4,
        "n_heads": 4,
        "ffn_dim": 256,
        "dropout": 0.1,
        "max_seq_len": 512,
        "n_bins": 51,
    },
    "cpu-small": {
        "embed_dim": 64,
        "n_layers": 2,
        "n_heads": 4,
        "ffn_dim": 128,
        "dropout": 0.0,
        "max_seq_len": 128,
        "n_bins": 51,
    },
}
