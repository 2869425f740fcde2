#pragma once

// Concept atlas: the recurring parts a model has learned across a dataset. FEC hands us the
// segments: every non-empty cluster of one pyramid level of every image is a segment, described
// by its ClusterPool representative at that position (PoolTrace::representatives, the rows that
// SegmentPyramid::representatives[level - 1] holds). The atlas clusters the
// L2-normalised representatives into K concepts (cv::kmeans, k-means++) and summarises each
// concept by its classes and by the exact evidence its segments carry (fec/evidence.h).
//
// `fec concepts` and the explorer's Concepts view both call this. LibTorch, OpenCV and std only.

#include <atomic>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include <ATen/Tensor.h>
#include <c10/core/Device.h>

#include "fec/analysis.h"
#include "fec/checkpoint.h"
#include "fec/model.h"
#include "fec/train/dataset.h"

namespace fec::explain {

struct ConceptOptions {
    int level = 0;              ///< pyramid level 1..L; 0: the last level
    int k = 32;                 ///< concepts
    int perConcept = 24;        ///< typical and contributing segments kept per concept
    uint64_t seed = 0;          ///< k-means initialisation and the fitting sample
    int batch = 64;             ///< images per traced forward
    int workers = 2;            ///< decoding threads (train::Loader)
    int attempts = 3;           ///< cv::kmeans attempts (best compactness kept)
    int64_t fitLimit = 200000;  ///< above this many segments k-means is fitted on a sample
    int size = 0;               ///< model input side; 0: inputSizeFor(checkpoint)
    std::string preprocess;     ///< "squash" or "crop"; empty: the checkpoint's, else the dataset's
};

/// One non-empty segment of the atlas level in one image.
struct AtlasSegment {
    int64_t image = 0;                   ///< index in Atlas::images
    int level = 0;                       ///< 1..L
    int32_t segment = 0;                 ///< raw position id on the level's grid
    int64_t pixels = 0;                  ///< model-input pixels
    int x0 = 0, y0 = 0, x1 = 0, y1 = 0;  ///< bounding box in model-input pixels, [x0, x1) x [y0, y1)
    int32_t concept = -1;                ///< 0..K-1
    float distance = 0;                  ///< to its concept's centre (L2 on normalised vectors)
};

struct ConceptSummary {
    int id = 0;
    std::string name;                   ///< user's name ("collar"); empty: "concept <id>"
    int64_t size = 0;                   ///< segments
    double imageShare = 0;              ///< share of the atlas images containing it, [0, 1]
    std::vector<int64_t> classCounts;   ///< [classes] segments per label of their image
    std::vector<double> meanEvidence;   ///< [classes] mean evidence of its segments for each class
    double purity = 0;                  ///< share of its segments from its most frequent class
    std::vector<int64_t> typical;       ///< segment indices closest to the centre, nearest first
    std::vector<int64_t> contributing;  ///< segment indices with the largest evidence for their
                                        ///< image's predicted class, largest first
};

/// A whole atlas, as built or as read back from its folder.
struct Atlas {
    std::string modelFile;  ///< checkpoint path as given
    std::string modelSha1;  ///< fileSha1 of the checkpoint
    std::string data;       ///< dataset path as given
    std::string split;      ///< "test", "train" or "" (image folder)
    int level = 0, levels = 0, k = 0, inputSize = 0;
    std::string preprocess;
    uint64_t seed = 0;
    std::vector<std::string> classNames;
    std::vector<std::string> images;   ///< image paths, or "idx:<index>" for IDX samples
    std::vector<int64_t> labels;       ///< per image: its label, -1 when unknown
    std::vector<int64_t> predicted;    ///< per image: the model's top-1 class
    std::vector<std::string> skipped;  ///< unreadable images with the reason, never aborting
    std::vector<AtlasSegment> segments;
    at::Tensor centres;                    ///< [K, D] float32 CPU, L2-normalised
    at::Tensor evidence;                   ///< [segments, classes] float32 CPU: exact evidence of each
                                           ///< segment for every class (logit units; fec/evidence.h)
    int perConcept = 0;                    ///< typical and contributing segments kept per concept
    int64_t fitted = 0;                    ///< segments k-means was fitted on (all, or a seeded sample)
    std::vector<ConceptSummary> concepts;  ///< K, by id
    double seconds = 0;                    ///< build time
    /// "concept <id>" or its name.
    std::string conceptLabel(int id) const;
};

/// Thrown by buildAtlas / writeAtlas when cancelled; nothing partial is left in the folder.
class AtlasCancelled : public std::runtime_error {
public:
    AtlasCancelled() : std::runtime_error("concept atlas cancelled") {}
};

/// Progress of a build: `done` of `total` images, the stage ("reading", "clustering",
/// "summarising", "writing").
using AtlasProgress = std::function<void(int64_t done, int64_t total, const std::string& stage)>;

/// Opens PATH the way `fec concepts` does: the Fashion-MNIST IDX files (`split` "test" or
/// "train"), an image folder ROOT/<class>/<image> (ROOT/<split>/<class>/... too) or a flat folder
/// of images (labels unknown, -1). `limit` > 0 keeps the first N IDX samples, or a seeded subset
/// of N files kept in file order. Image i is named "idx:<index>" or by its path (images.txt).
/// `classNames`: the model's stored names (may be empty). Throws std::invalid_argument naming
/// PATH when it is not a folder or holds no images.
train::DatasetPtr openAtlasData(const std::string& path, const std::string& split, int64_t limit, uint64_t seed,
                                const std::vector<std::string>& classNames);

/// The dataset whose sample i is atlas.images[i] (IDX samples re-read from atlas.data and
/// atlas.split, files from their path), for contact sheets and galleries. Throws
/// std::runtime_error naming the file when the data is gone.
train::DatasetPtr openAtlasImages(const Atlas& atlas);

/// Builds the atlas of `data` under `model` (eval mode, on `device`). Unreadable images are
/// skipped and listed. Throws std::invalid_argument for a level outside 1..L (naming the range),
/// K < 2 or K larger than the number of segments (naming both), an empty dataset, or a backbone
/// without a classifier. When `cancel` becomes true it throws AtlasCancelled.
Atlas buildAtlas(FecModelImpl& model, const CheckpointInfo& info, const std::string& checkpointPath,
                 const c10::Device& device, const train::DatasetPtr& data, const ConceptOptions& options,
                 const AtlasProgress& progress = {}, const std::atomic<bool>* cancel = nullptr);

/// Writes `concepts.json`, `assignments.npy` (int32 [segments, 4]: image, level, segment,
/// concept), `centres.npy` (float32 [K, D]), `images.txt` and one `concept_<k>.png` contact sheet
/// per concept into `dir` (created if needed), each file atomically. Contact sheets re-read the
/// images of the kept segments from `data` and run `model` on them to outline the segment.
/// `data`: the dataset the atlas was built from, or one whose sample i is atlas.images[i]; when
/// images were skipped, or `data` is null, openAtlasImages(atlas) is used instead. Also written:
/// `boxes.npy` (int32 [segments, 5]: pixels, x0, y0, x1, y1 in model-input pixels),
/// `distances.npy` (float32 [segments]) and `evidence.npy` (float32 [segments, classes]).
/// Everything is written into a hidden temporary folder beside `dir` that replaces `dir` only
/// when complete; a non-empty `dir` that holds no atlas is refused (std::runtime_error).
void writeAtlas(const Atlas& atlas, const std::string& dir, FecModelImpl& model, const c10::Device& device,
                const train::DatasetPtr& data, const std::atomic<bool>* cancel = nullptr);

/// Reads an atlas folder back (concepts.json, assignments.npy, centres.npy, images.txt). Throws
/// std::runtime_error naming the file and the problem for a missing, truncated or inconsistent file.
Atlas readAtlas(const std::string& dir);

/// Rewrites the names in `dir`/concepts.json atomically (everything else unchanged). `names`: K
/// entries, empty = unnamed.
void writeConceptNames(const std::string& dir, const std::vector<std::string>& names);

/// Throws std::runtime_error naming both hashes when the atlas was built from another model file.
void checkAtlasModel(const Atlas& atlas, const std::string& checkpointPath);

/// How one concept of an atlas reappears in another atlas of the same segments.
struct ConceptMatch {
    int concept = 0;     ///< id in the first atlas
    int64_t size = 0;    ///< its segments
    int match = -1;      ///< id in the second atlas sharing the most segments with it (ties: lower id)
    int64_t shared = 0;  ///< segments in both
    double jaccard = 0;  ///< shared / segments in either
};

/// Agreement of two atlases built over the same segments (another seed, K or sample).
struct AtlasAgreement {
    int64_t segments = 0;
    double adjustedRand = 0;            ///< adjusted Rand index (Hubert & Arabie 1985): 1 = the same
                                        ///< partition, about 0 = chance, negative = worse than chance
    std::vector<ConceptMatch> matches;  ///< one per concept of the first atlas, by id
};

/// Compares the concept assignments of two atlases. Throws std::invalid_argument when they do not
/// hold the same segments (the same images in the same order, level and segment ids).
AtlasAgreement compareAtlases(const Atlas& first, const Atlas& second);

/// Concept of each non-empty segment of one image at the atlas level: `representatives` [M, D]
/// (rows of SegmentPyramid::representatives[atlas.level - 1] at the level's nonEmpty ids, any
/// float type, any device), nearest centre by cosine (ties: the lower id). Returns M concept ids.
std::vector<int32_t> nearestConcepts(const Atlas& atlas, const at::Tensor& representatives);

/// nearestConcepts for every non-empty segment of the atlas level of one explained image, in the
/// level's nonEmpty order. Throws std::invalid_argument when `pyramid` has no such level or no
/// representatives there (another architecture).
std::vector<int32_t> segmentConcepts(const Atlas& atlas, const SegmentPyramid& pyramid);

/// One tile of a concept's contact sheet (concept_<id>.png), caption included, in sheet pixels.
struct SheetTile {
    int64_t segment = -1;  ///< row of assignments.npy (index in Atlas::segments)
    int x = 0, y = 0, width = 0, height = 0;
};
/// The tiles of `summary`'s contact sheet in drawing order: its typical segments, then its
/// contributing ones. The sheet writer lays them out with the same function, so a click on the
/// sheet finds its segment.
std::vector<SheetTile> contactSheetTiles(const ConceptSummary& summary);

}  // namespace fec::explain
