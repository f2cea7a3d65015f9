"""The published numbers the report sets beside the measured ones, as data.

Values are strings exactly as printed (the paper's † and * markers kept); a cell the paper
leaves empty is simply absent. Sources: the DeepCluster paper (Caron et al., ECCV 2018,
Tables 1-5), JULE (Yang et al., CVPR 2016) and IIC (Ji et al., ICCV 2019) for DeepCluster's
accuracy on small sets. Numbers marked (u) could not be checked against the paper text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

CARON = "Caron et al. 2018"
JULE = "Yang et al. 2016, JULE"
IIC = "Ji et al. 2019, IIC"

LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5")
PROBES = ("ImageNet", "Places", "Fashion-MNIST")           # Table 1 column groups
VOC = ("Classification", "Detection", "Segmentation")      # Table 2/3 column groups
VOC_SETTINGS = ("FC6-8", "ALL")
ARCHS = ("AlexNet", "VGG-16")                              # Table 4 columns
RETRIEVAL = ("Oxford5k", "Paris6k")                        # Table 5 columns
CLUSTER_SETS = ("MNIST-test", "USPS", "COIL-20", "COIL-100", "UMist", "FRGC", "CMU-PIE", "YTF",
                "MNIST-full", "CIFAR-10", "STL-10", "CIFAR-100-20")


@dataclass(frozen=True)
class PublishedRow:
    """One method's row of a paper table: column label -> value as printed."""

    method: str
    source: str
    values: dict[str, str]
    lead: dict[str, str] = field(default_factory=dict)   # e.g. {"training set": "ImageNet"}


def probe_column(probe: str, layer: str) -> str:
    return f"{probe} {layer}"


def voc_column(group: str, setting: str) -> str:
    return f"{group} {setting}"


def _layers(probe: str, printed: str) -> dict[str, str]:
    return {probe_column(probe, layer): v for layer, v in zip(LAYERS, printed.split())}


def _voc(**printed: str) -> dict[str, str]:
    """Keyword cls_fc / cls_all / det_fc / det_all / seg_fc / seg_all -> Table 2 columns."""
    names = {"cls": "Classification", "det": "Detection", "seg": "Segmentation",
             "fc": "FC6-8", "all": "ALL"}
    out = {}
    for key, value in printed.items():
        group, setting = key.split("_")
        out[voc_column(names[group], names[setting])] = value
    return out


def _row(method: str, source: str, **values: str) -> PublishedRow:
    return PublishedRow(method, source, dict(values))


# Table 1: linear probes on frozen AlexNet layers, top-1 accuracy.
TABLE1 = [
    PublishedRow("Places labels", CARON, _layers("Places", "22.1 35.1 40.2 43.3 44.6")),
    PublishedRow("ImageNet labels", CARON, {**_layers("ImageNet", "19.3 36.3 44.2 48.3 50.5"),
                                            **_layers("Places", "22.7 34.8 38.4 39.4 38.7")}),
    PublishedRow("Random", CARON, {**_layers("ImageNet", "11.6 17.1 16.9 16.3 14.1"),
                                   **_layers("Places", "15.7 20.3 19.8 19.1 17.5")}),
    PublishedRow("Pathak et al. [38]", CARON,
                 {**_layers("ImageNet", "14.1 20.7 21.0 19.8 15.5"),
                  **_layers("Places", "18.2 23.2 23.4 21.9 18.4")}),
    PublishedRow("Doersch et al. [25]", CARON,
                 {**_layers("ImageNet", "16.2 23.3 30.2 31.7 29.6"),
                  **_layers("Places", "19.7 26.7 31.9 32.7 30.9")}),
    PublishedRow("Zhang et al. [28]", CARON,
                 {**_layers("ImageNet", "12.5 24.5 30.4 31.5 30.3"),
                  **_layers("Places", "16.0 25.7 29.6 30.3 29.7")}),
    PublishedRow("Donahue et al. [20]", CARON,
                 {**_layers("ImageNet", "17.7 24.5 31.0 29.9 28.0"),
                  **_layers("Places", "21.4 26.2 27.1 26.1 24.0")}),
    PublishedRow("Noroozi and Favaro [26]", CARON,
                 {**_layers("ImageNet", "18.2 28.8 34.0 33.9 27.1"),
                  **_layers("Places", "23.0 32.1 35.5 34.8 31.3")}),
    PublishedRow("Noroozi et al. [45]", CARON,
                 {**_layers("ImageNet", "18.0 30.6 34.3 32.5 25.7"),
                  **_layers("Places", "23.3 33.9 36.3 34.7 29.6")}),
    PublishedRow("Zhang et al. [43]", CARON,
                 {**_layers("ImageNet", "17.7 29.3 35.4 35.2 32.8"),
                  **_layers("Places", "21.3 30.7 34.0 34.1 32.5")}),
    PublishedRow("DeepCluster", CARON, {**_layers("ImageNet", "12.9 29.2 38.2 39.8 36.1"),
                                        **_layers("Places", "18.6 30.8 37.0 37.5 33.1")}),
]

# Modern trunks (REFERENCE.md, "Published numbers for modern trunks"): ImageNet linear top-1
# on the tap each paper reports (ResNet-50: the global pool; DINO ViT-S/16: the last four
# CLS tokens; ViT-B/16: CLS + pooled patch tokens), DINO's 20-NN, Faster R-CNN R50-C4 AP50
MODERN_TAPS = {"resnet50": "res5avg", "vit-s16": "cls4", "vit-b16": "cls+avgpool"}
MODERN_LINEAR = {arch: f"ImageNet linear, {tap}" for arch, tap in MODERN_TAPS.items()}
MODERN_KNN = {"resnet50": "ImageNet 20-NN, res5avg", "vit-s16": "ImageNet 20-NN, cls (ViT-S)",
              "vit-b16": "ImageNet 20-NN, cls (ViT-B)"}
MODERN_DET = "VOC07+12 det AP50 (R50-C4)"
MODERN = [
    PublishedRow("ResNet-50 supervised (torchvision)", "He et al. 2016; MoCo paper for det",
                 {MODERN_LINEAR["resnet50"]: "76.1", MODERN_DET: "81.3"}),
    PublishedRow("MoCo v2, 800 epochs", "Chen et al. 2020",
                 {MODERN_LINEAR["resnet50"]: "71.1", MODERN_DET: "82.5"}),
    PublishedRow("SwAV, 800 epochs, multi-crop", "Caron et al. 2020",
                 {MODERN_LINEAR["resnet50"]: "75.3"}),
    PublishedRow("DeepCluster-v2, 800 epochs, multi-crop", "Caron et al. 2020 (SwAV paper)",
                 {MODERN_LINEAR["resnet50"]: "75.2"}),
    PublishedRow("DINO ResNet-50", "Caron et al. 2021",
                 {MODERN_LINEAR["resnet50"]: "75.3", MODERN_KNN["resnet50"]: "67.5"}),
    PublishedRow("DINO ViT-S/16", "Caron et al. 2021",
                 {MODERN_LINEAR["vit-s16"]: "77.0", MODERN_KNN["vit-s16"]: "74.5"}),
    PublishedRow("DINO ViT-B/16", "Caron et al. 2021",
                 {MODERN_LINEAR["vit-b16"]: "78.2", MODERN_KNN["vit-b16"]: "76.1"}),
]

# Table 2: PASCAL VOC transfer. Rows with gaps in the seed's flattened table are placed in
# the ALL columns (where the paper prints them); see TABLE2_NOTES.
TABLE2 = [
    PublishedRow("ImageNet labels", CARON, _voc(cls_fc="78.9", cls_all="79.9", det_all="56.8",
                                                seg_all="48.0")),
    PublishedRow("Random-rgb", CARON, _voc(cls_fc="33.2", cls_all="57.0", det_fc="22.2",
                                           det_all="44.5", seg_fc="15.2", seg_all="30.1")),
    PublishedRow("Random-sobel", CARON, _voc(cls_fc="29.0", cls_all="61.9", det_fc="18.9",
                                             det_all="47.9", seg_fc="13.0", seg_all="32.0")),
    PublishedRow("Pathak et al. [38]", CARON, _voc(cls_fc="34.6", cls_all="56.5",
                                                   det_all="44.5", seg_all="29.7")),
    PublishedRow("Donahue et al. [20]*", CARON, _voc(cls_fc="52.3", cls_all="60.1",
                                                     det_all="46.9", seg_all="35.2")),
    PublishedRow("Pathak et al. [27]", CARON, _voc(cls_all="61.0", det_all="52.2")),
    PublishedRow("Owens et al. [44]*", CARON, _voc(cls_fc="52.3", cls_all="61.3")),
    PublishedRow("Wang and Gupta [29]*", CARON, _voc(cls_fc="55.6", cls_all="63.1",
                                                     det_fc="32.8†", det_all="47.2",
                                                     seg_fc="26.0†", seg_all="35.4†")),
    PublishedRow("Doersch et al. [25]*", CARON, _voc(cls_fc="55.1", cls_all="65.3",
                                                     det_all="51.1")),
    PublishedRow("Bojanowski and Joulin [19]*", CARON,
                 _voc(cls_fc="56.7", cls_all="65.3", det_fc="33.7†", det_all="49.4",
                      seg_fc="26.7†", seg_all="37.1†")),
    PublishedRow("Zhang et al. [28]*", CARON, _voc(cls_fc="61.5", cls_all="65.9",
                                                   det_fc="43.4†", det_all="46.9",
                                                   seg_fc="35.8†", seg_all="35.6")),
    PublishedRow("Zhang et al. [43]*", CARON, _voc(cls_fc="63.0", cls_all="67.1",
                                                   det_all="46.7", seg_all="36.0")),
    PublishedRow("Noroozi and Favaro [26]", CARON, _voc(cls_all="67.6", det_all="53.2",
                                                        seg_all="37.6")),
    PublishedRow("Noroozi et al. [45]", CARON, _voc(cls_all="67.7", det_all="51.4",
                                                    seg_all="36.6")),
    PublishedRow("DeepCluster", CARON, _voc(cls_fc="70.4", cls_all="73.7", det_fc="51.4",
                                            det_all="55.4", seg_fc="43.2", seg_all="45.1")),
]
TABLE2_NOTES = [
    "Erratum: DeepCluster FC6-8 classification is 70.4 with BatchNorm frozen (shown); the "
    "first printing had 72.0, obtained with BatchNorm trained (Table 3 keeps 72.0).",
    "* and † are the paper's own markers, kept as printed (see the paper's Table 2 caption).",
    "Published rows with gaps: the seed text flattens empty cells, so values were placed in "
    "the columns the paper prints them in (FC6-8 detection/segmentation is mostly not "
    "reported).",
]

# Table 3: the same by pretraining set.
TABLE3 = [
    PublishedRow("Best competitor", CARON, _voc(cls_fc="63.0", cls_all="67.7", det_fc="43.4†",
                                                det_all="53.2", seg_fc="35.8†", seg_all="37.7"),
                 {"training set": "ImageNet"}),
    PublishedRow("DeepCluster", CARON, _voc(cls_fc="72.0", cls_all="73.7", det_fc="51.4",
                                            det_all="55.4", seg_fc="43.2", seg_all="45.1"),
                 {"training set": "ImageNet"}),
    PublishedRow("DeepCluster", CARON, _voc(cls_fc="67.3", cls_all="69.3", det_fc="45.6",
                                            det_all="53.0", seg_fc="39.2", seg_all="42.2"),
                 {"training set": "YFCC100M (1M)"}),
]

# Table 4: VOC2007 detection (ALL) by architecture.
TABLE4 = [
    _row("ImageNet labels", CARON, **{"AlexNet": "56.8", "VGG-16": "67.3"}),
    _row("Random", CARON, **{"AlexNet": "47.8", "VGG-16": "39.7"}),
    _row("Doersch et al. [25]", CARON, **{"AlexNet": "51.1", "VGG-16": "61.5"}),
    _row("Wang and Gupta [29]", CARON, **{"AlexNet": "47.2", "VGG-16": "60.2"}),
    _row("Wang et al. [46]", CARON, **{"VGG-16": "63.2"}),
    _row("DeepCluster", CARON, **{"AlexNet": "55.4", "VGG-16": "65.9"}),
]

# Table 5: instance retrieval mAP (original Oxford5k / Paris6k protocol).
TABLE5 = [
    _row("ImageNet labels", CARON, Oxford5k="72.4", Paris6k="81.5"),
    _row("Random", CARON, Oxford5k="6.9", Paris6k="22.0"),
    _row("Doersch et al. [25]", CARON, Oxford5k="35.4", Paris6k="53.1"),
    _row("Wang et al. [46]", CARON, Oxford5k="42.3", Paris6k="58.0"),
    _row("DeepCluster", CARON, Oxford5k="61.0", Paris6k="72.0"),
]

# Clustering, JULE's table shape (rows = methods, columns = datasets), per metric.
CLUSTERING = {
    "nmi_geometric": [
        _row("JULE-SF", JULE, **{"MNIST-test": "0.876", "USPS": "0.858", "COIL-20": "1.000",
                                 "COIL-100": "0.978", "UMist": "0.880", "FRGC": "0.566 (u)",
                                 "CMU-PIE": "0.984 (u)", "YTF": "0.848 (u)"}),
        _row("JULE-RC", JULE, **{"MNIST-test": "0.915", "USPS": "0.913", "COIL-20": "1.000",
                                 "COIL-100": "0.985", "UMist": "0.877", "FRGC": "0.574 (u)",
                                 "CMU-PIE": "1.000 (u)", "YTF": "0.848 (u)"}),
        _row("JULE", JULE, **{"MNIST-full": "0.913"}),
        _row("JULE", IIC, **{"CIFAR-10": "0.192", "STL-10": "0.182"}),
    ],
    "acc": [
        _row("JULE", JULE, **{"MNIST-full": "96.4"}),
        _row("DeepCluster (k = classes)", IIC, **{"MNIST-full": "65.6", "CIFAR-10": "37.4",
                                                  "STL-10": "33.4", "CIFAR-100-20": "18.9"}),
    ],
}
CLUSTERING_NOTES = [
    "Published NMI uses the geometric normalisation (JULE's); (u) = could not be checked "
    "against the paper text.",
    "JULE's MNIST-full NMI/ACC (0.913 / 96.4): the JULE variant is not stated in the sources "
    "gathered for dcbench.",
    "DeepCluster ACC on small sets comes from IIC's runs of the original code with k = number "
    "of classes; IIC's MNIST is the full 70k set.",
]

# How record names (dataset, checkpoint data and arch) read as the paper's column labels.
DATASET_LABELS = {
    "imagenet": "ImageNet", "places205": "Places", "yfcc1m": "YFCC100M (1M)",
    "fashion-mnist": "Fashion-MNIST", "mnist": "MNIST-full", "mnist-test": "MNIST-test",
    "usps": "USPS", "coil20": "COIL-20", "coil-20": "COIL-20", "coil100": "COIL-100",
    "coil-100": "COIL-100", "umist": "UMist", "frgc": "FRGC", "cmu-pie": "CMU-PIE",
    "ytf": "YTF", "cifar10": "CIFAR-10", "cifar-10": "CIFAR-10", "stl10": "STL-10",
    "stl-10": "STL-10", "cifar100-20": "CIFAR-100-20", "cifar-100-20": "CIFAR-100-20",
}
ARCH_LABELS = {"alexnet": "AlexNet", "vgg16": "VGG-16", "alexnet-small": "AlexNet (small)",
               "alexnet-small-wide": "AlexNet (small, 2x wide)"}


def dataset_label(name: object) -> str:
    return DATASET_LABELS.get(str(name), str(name)) if isinstance(name, str) and name else "?"
