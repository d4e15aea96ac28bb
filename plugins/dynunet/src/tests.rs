use niftyhost_blocks::count;
use niftyhost_blocks::testing::{build, shape_table, Expect};
use tch::{Device, Kind, Tensor};

use super::{Topology, NETWORK};

/// A same-padded convolution with bias: `out · in · kernel volume + out`.
fn conv(c_in: i64, c_out: i64, kernel_volume: i64) -> i64 {
    c_out * c_in * kernel_volume + c_out
}

/// Instance normalisation's scale and shift.
fn norm(c: i64) -> i64 {
    2 * c
}

const ISOTROPIC: &str = r#"{"in_channels": 1, "num_classes": 3, "base_channels": 4,
    "kernel_sizes": [[3, 3, 3], [3, 3, 3], [3, 3, 3]], "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2]]}"#;

const ANISOTROPIC: &str = r#"{"in_channels": 2, "num_classes": 2, "base_channels": 4, "max_channels": 16,
    "block": "residual", "kernel_sizes": [[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]],
    "strides": [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]]}"#;

fn with(base: &str, extra: &str) -> String {
    format!("{}, {extra}}}", base.trim_end().trim_end_matches('}'))
}

#[test]
fn isotropic_plain_three_levels_base_4_has_the_hand_counted_parameters() {
    // Maps 4, 8, 16; 3³ kernels (27), every conv with bias, instance norm after each.
    // Encoder: level 0 1→4→4, level 1 4→8→8 (stride 2), level 2 8→16→16 (stride 2).
    let encoder = (conv(1, 4, 27) + norm(4) + conv(4, 4, 27) + norm(4))
        + (conv(4, 8, 27) + norm(8) + conv(8, 8, 27) + norm(8))
        + (conv(8, 16, 27) + norm(16) + conv(16, 16, 27) + norm(16));
    // Decoder: 2³ transposed convs 16→8 and 8→4 (weights in·out·8 and bias out), then
    // blocks on the concatenation: 16→8→8 and 8→4→4.
    let decoder = (16 * 8 * 8 + 8 + conv(16, 8, 27) + norm(8) + conv(8, 8, 27) + norm(8))
        + (8 * 4 * 8 + 4 + conv(8, 4, 27) + norm(4) + conv(4, 4, 27) + norm(4));
    let head = conv(4, 3, 1);
    // = 564 + 2640 + 10464 + 6264 + 1580 + 15
    assert_eq!(encoder + decoder + head, 21_527);
    let net = build(&NETWORK, ISOTROPIC).unwrap();
    assert_eq!(count::trainable(&net.vs), encoder + decoder + head);
    // One auxiliary head on decoder level 1 (8 maps → 3 classes).
    let net = build(&NETWORK, &with(ISOTROPIC, r#""deep_supervision": 1"#)).unwrap();
    assert_eq!(count::trainable(&net.vs), encoder + decoder + head + conv(8, 3, 1));
}

#[test]
fn anisotropic_residual_four_levels_has_the_hand_counted_parameters() {
    // Maps min(4·2^l, 16) = 4, 8, 16, 16; level 0's kernel 1×3×3 (9), the others 27.
    // A residual block c_in → c_out: two conv + norm, and a 1³ projection with bias when the
    // maps or the size change (every block here).
    let residual = |c_in, c_out, k| conv(c_in, c_out, k) + norm(c_out) + conv(c_out, c_out, k) + norm(c_out);
    let projection = |c_in, c_out| conv(c_in, c_out, 1);
    let encoder = (residual(2, 4, 9) + projection(2, 4))
        + (residual(4, 8, 27) + projection(4, 8))
        + (residual(8, 16, 27) + projection(8, 16))
        // 16 → 16 but stride 2: projected.
        + (residual(16, 16, 27) + projection(16, 16));
    // Transposed convs with kernel = the stride of the level below: 2³ (8), 2³ (8), 1×2×2 (4).
    let decoder = (16 * 16 * 8 + 16 + residual(32, 16, 27) + projection(32, 16))
        + (16 * 8 * 8 + 8 + residual(16, 8, 27) + projection(16, 8))
        + (8 * 4 * 4 + 4 + residual(8, 4, 9) + projection(8, 4));
    let head = conv(4, 2, 1);
    let net = build(&NETWORK, ANISOTROPIC).unwrap();
    assert_eq!(count::trainable(&net.vs), encoder + decoder + head);
    // = (252 + 2680 + 10608 + 14192) + (23424 + 6400 + 624) + 10
    assert_eq!(encoder + decoder + head, 58_190);
}

#[test]
fn outputs_have_the_input_size_and_bad_sizes_name_the_rule() {
    shape_table(
        &NETWORK,
        &[
            (ISOTROPIC, &[2, 1, 16, 16, 16], Expect::Shape(&[2, 3, 16, 16, 16])),
            (ISOTROPIC, &[1, 1, 8, 12, 20], Expect::Shape(&[1, 3, 8, 12, 20])),
            (ANISOTROPIC, &[1, 2, 4, 16, 8], Expect::Shape(&[1, 2, 4, 16, 8])),
            (
                &with(ANISOTROPIC, r#""norm": "batch", "activation": "relu""#),
                &[2, 2, 8, 8, 16],
                Expect::Shape(&[2, 2, 8, 8, 16]),
            ),
            (
                ANISOTROPIC,
                &[1, 2, 4, 12, 8],
                Expect::Error(
                    "dynunet needs each spatial size divisible by the product of its strides along that axis: \
                     (D, H, W) by [4, 8, 8], i.e. a window (i, j, k) divisible by [8, 8, 4]; got (D, H, W) [4, 12, 8]",
                ),
            ),
            (ISOTROPIC, &[1, 2, 8, 8, 8], Expect::Error("dynunet needs a [N, C, D, H, W] input with 1 channel")),
        ],
    );
}

#[test]
fn deep_supervision_returns_the_main_output_then_coarser_ones() {
    let net = build(&NETWORK, &with(ANISOTROPIC, r#""deep_supervision": 2"#)).unwrap();
    let x = Tensor::randn([2, 2, 8, 16, 24], (Kind::Float, Device::Cpu));
    let outputs = net.model.forward_outputs_t(&x, true);
    let shapes: Vec<Vec<i64>> = outputs.iter().map(Tensor::size).collect();
    // Level 1 is strided [1, 2, 2], level 2 [2, 2, 2] more.
    assert_eq!(shapes, [vec![2, 2, 8, 16, 24], vec![2, 2, 8, 8, 12], vec![2, 2, 4, 4, 6]]);
    // The main output is forward's: same weights, same input, evaluation mode.
    let main = net.model.forward_outputs_t(&x, false).swap_remove(0);
    assert!(main.allclose(&net.model.forward_t(&x, false), 1e-6, 1e-6, false));
    // Without deep supervision, one output.
    let plain = build(&NETWORK, ANISOTROPIC).unwrap();
    assert_eq!(plain.model.forward_outputs_t(&x, false).len(), 1);
}

#[test]
fn bad_parameters_are_errors_naming_the_parameter() {
    let cases: &[(&str, &str)] = &[
        (
            r#""kernel_sizes": [[3, 3, 3], [2, 3, 3], [3, 3, 3]]"#,
            "parameter `kernel_sizes`: level 1 has kernel 2 along D, expected an odd size",
        ),
        (
            r#""strides": [[1, 1, 1], [2, 2, 2]]"#,
            "parameter `strides`: 2 levels, but `kernel_sizes` has 3: give one stride per level",
        ),
        (
            r#""strides": [[2, 2, 2], [2, 2, 2], [2, 2, 2]]"#,
            "parameter `strides`: the first level's stride must be [1, 1, 1], got [2, 2, 2]",
        ),
        (
            r#""strides": [[1, 1, 1], [2, 2], [2, 2, 2]]"#,
            "parameter `strides`: level 1 has 2 entries, expected 3 ([D, H, W])",
        ),
        (
            r#""strides": [[1, 1, 1], [2, 0, 2], [2, 2, 2]]"#,
            "parameter `strides`: level 1 has 0 along H, expected a positive size",
        ),
        (
            r#""deep_supervision": 2"#,
            "parameter `deep_supervision`: 2 auxiliary outputs, expected 0 to 1 (levels - 2 with 3 levels)",
        ),
        (r#""block": "dense""#, "parameter `block` must be one of [\"plain\", \"residual\"], got \"dense\""),
        (r#""norm": "group""#, "parameter `norm` must be one of [\"instance\", \"batch\", \"none\"], got \"group\""),
        (r#""strides": [1, 2, 2]"#, "parameter `strides` must be int_list_list, got [1,2,2]"),
    ];
    for (extra, expected) in cases {
        let err = build(&NETWORK, &with(ISOTROPIC, extra)).err().unwrap_or_else(|| panic!("{extra} built"));
        assert!(err.contains(expected), "{extra}: `{err}` lacks `{expected}`");
    }
    let err =
        build(&NETWORK, r#"{"in_channels": 1, "num_classes": 2, "kernel_sizes": [[3, 3, 3]], "strides": [[1, 1, 1]]}"#)
            .err()
            .unwrap();
    assert!(err.contains("parameter `kernel_sizes`: 1 level(s), a U-Net needs at least 2"), "{err}");
}

#[test]
fn channels_double_per_level_up_to_the_cap() {
    let params = niftyhost_plugin_api::sdk::Params::parse(
        "dynunet",
        &with(ANISOTROPIC, r#""base_channels": 5, "max_channels": 12, "spatial_dims": 3"#),
        NETWORK.params,
        &niftyhost_plugin_api::HOST_NETWORK_KEYS,
    )
    .unwrap();
    let topology = Topology::from_params(&params).unwrap();
    assert_eq!(topology.channels, [5, 10, 12, 12]);
    assert_eq!(topology.total_stride(), [4, 8, 8]);
    assert_eq!(topology.level_sizes([8, 16, 16]), [[8, 16, 16], [8, 8, 8], [4, 4, 4], [2, 2, 2]]);
}
