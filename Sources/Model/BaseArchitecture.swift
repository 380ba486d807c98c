/// The default Earshot encoder: a small streaming convolutional CTC model.
///
/// Two convs take the 10 ms frames to 40 ms (`subsampling` 4) or 20 ms (2), then `blocks` residual blocks of
/// [depthwise conv (kernel `kernel`) -> pointwise conv -> layernorm -> relu] model context cheaply
/// (depthwise taps cost `channels` multiplies each; the pointwise product is one sgemm), and two dense
/// layers produce the logits. Look-ahead comes from the two front convs (1 + 2 input frames) and
/// from `lookAheadBlocks` of the blocks having one future frame each (`subsampling` input frames
/// each), spread evenly, so the default total is 3 + 4 x 4 = 19 frames = 190 ms.
///
/// Subsampling 2 exists for character CTC: at 40 ms, English speech needs a non-blank output on
/// about 60 % of frames (more with doubled letters, which need a blank between them), which squeezes
/// the alignment; 20 ms halves that at twice the compute per second of audio.
public enum BaseArchitecture {
    /// The subsampling factors the front supports.
    public static let subsamplings = [2, 4]

    public static func layers(inputDim: Int = 80, channels: Int = 256, blocks: Int = 10, kernel: Int = 9,
                              hidden: Int = 512, vocabularySize: Int = 29, lookAheadBlocks: Int = 4,
                              subsampling: Int = 4) -> [LayerSpec] {
        precondition(kernel >= 2, "block kernel must be at least 2 to have look-ahead room")
        precondition(subsamplings.contains(subsampling), "subsampling must be one of \(subsamplings)")
        var layers: [LayerSpec] = [
            .conv1d(Conv1DSpec(name: "front.conv1", inChannels: inputDim, outChannels: channels, kernel: 5, stride: 2, rightContext: 1)),
            .layerNorm(LayerNormSpec(name: "front.norm1", dim: channels)),
            .relu,
            .conv1d(Conv1DSpec(name: "front.conv2", inChannels: channels, outChannels: channels, kernel: 3, stride: subsampling / 2, rightContext: 1)),
            .layerNorm(LayerNormSpec(name: "front.norm2", dim: channels)),
            .relu,
        ]
        let withLookAhead = min(max(lookAheadBlocks, 0), blocks)
        for b in 0..<blocks {
            // Block b gets a future frame when the running share of look-ahead blocks steps up, which
            // spreads them evenly (every other block for 5 of 10).
            let right = withLookAhead > 0 && (b + 1) * withLookAhead / blocks > b * withLookAhead / blocks ? 1 : 0
            let name = "blocks.\(b)"
            layers.append(.residual(name: name, body: [
                .conv1d(Conv1DSpec(name: "\(name).depthwise", inChannels: channels, outChannels: channels, kernel: kernel,
                                   rightContext: right, groups: channels)),
                .conv1d(Conv1DSpec(name: "\(name).pointwise", inChannels: channels, outChannels: channels, kernel: 1)),
                .layerNorm(LayerNormSpec(name: "\(name).norm", dim: channels)),
                .relu,
            ]))
        }
        layers.append(.dense(DenseSpec(name: "head.hidden", inFeatures: channels, outFeatures: hidden)))
        layers.append(.relu)
        layers.append(.dense(DenseSpec(name: "head.output", inFeatures: hidden, outFeatures: vocabularySize)))
        return layers
    }

    /// The architecture record for `layers(...)` with 10 ms input frames.
    public static func architecture(inputDim: Int = 80, channels: Int = 256, blocks: Int = 10, kernel: Int = 9,
                                    hidden: Int = 512, vocabularySize: Int = 29, lookAheadBlocks: Int = 4,
                                    subsampling: Int = 4, frameDurationMs: Double = 10) -> EncoderArchitecture {
        EncoderArchitecture(layers: layers(inputDim: inputDim, channels: channels, blocks: blocks, kernel: kernel, hidden: hidden,
                                           vocabularySize: vocabularySize, lookAheadBlocks: lookAheadBlocks,
                                           subsampling: subsampling),
                            inputDim: inputDim, frameDurationMs: frameDurationMs)
    }
}
