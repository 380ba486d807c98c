/// Every parameter of the log-mel frontend, as stored (JSON, camelCase keys) in the model file's metadata.
///
/// The defaults are Earshot's base model: 16 kHz, 25 ms Hann (periodic) window, 10 ms hop, 512-point
/// FFT, 80 Slaney-normalised Slaney-scale mel bins from 0 Hz to Nyquist, signal-level pre-emphasis 0.97,
/// power spectrum, `log(x + 2^-24)`, no dither, non-centred (streaming) frames, no normalisation.
/// Decoding JSON fills missing keys with these defaults and rejects unknown keys, so a typo in a model
/// file is an error rather than a silently ignored setting.
///
/// Per frame the frontend computes, in this order:
/// 1. per sample, over the whole signal: `x * sampleScale`, `+ dither * N(0,1)`,
///    then pre-emphasis `y[n] = x[n] - preemphasis * x[n-1]` when `preemphasisScope == .signal`
///    (`x[-1] = 0`, so the first sample is kept, as NeMo does);
/// 2. framing: frame `t` takes `windowLength` samples starting at `t * hopLength` (`center == false`),
///    or centred on sample `t * hopLength` after padding the signal with `fftSize / 2` zeros at each
///    end, the window sitting in the middle of an `fftSize` frame exactly as `torch.stft`/`librosa.stft`
///    place it (`center == true`);
/// 3. per frame: DC offset removal (`removeDCOffset`), Kaldi's per-frame pre-emphasis
///    (`preemphasisScope == .frame`: `y[i] = x[i] - c x[i-1]`, `y[0] = x[0] - c x[0]`), window;
/// 4. zero-padded real FFT of `fftSize` points, `|X|^power` for the `fftSize / 2 + 1` bins;
/// 5. mel projection (`melBins` triangular filters, see `MelFilterbank`);
/// 6. `log(x + logGuard)` (`logGuardKind == .add`) or `log(max(x, logGuard))` (`.clamp`);
/// 7. normalisation: none, per utterance and feature (`.perFeature`, offline only) or
///    `(x - mean) / std` with supplied statistics (`.global`).
///
/// ## Mapping NeMo's `AudioToMelSpectrogramPreprocessor`
/// | NeMo | here |
/// |---|---|
/// | `sample_rate` | `sampleRate` |
/// | `window_size`, `window_stride` (seconds) | `windowLength`, `hopLength` = seconds * sampleRate |
/// | `n_window_size`, `n_window_stride` | `windowLength`, `hopLength` |
/// | `n_fft` (default next power of two of the window) | `fftSize` |
/// | `window` (`hann`, `hamming`, `blackman`, `bartlett`, `none`) | `window` (`none` = `.rectangular`); NeMo builds symmetric windows (`periodic=False`): `periodicWindow = false` |
/// | `features` / `nfilt` | `melBins` |
/// | `lowfreq`, `highfreq` | `fMin`, `fMax` |
/// | `preemph` (default 0.97, `None` = off) | `preemphasis`, `preemphasisScope = .signal` |
/// | `mel_norm` (`slaney` / `None`) | `melNormalization`; NeMo's filters are librosa's with `htk=False`: `melScale = .slaney`, `melTriangles = .linearInHertz` |
/// | `mag_power` | `power` |
/// | `log` | always true here |
/// | `log_zero_guard_type`, `log_zero_guard_value` (`"tiny"` = `Float.leastNormalMagnitude`, `"eps"` = `Float.ulpOfOne`) | `logGuardKind`, `logGuard` |
/// | `dither` (NeMo applies it only in training) | `dither` (0 for inference) |
/// | `normalize` (`per_feature`, `None`) | `normalization` (`.perFeature`, `.none`); NeMo's fixed mean/std = `.global` |
/// | `pad_to`, `pad_value`, `frame_splicing`, `exact_pad`, `nb_augmentation_prob` | unsupported: use `pad_to = 0`, `frame_splicing = 1`, `exact_pad = False`; NeMo's STFT is `center=True` with zero (`constant`) padding: `center = true` |
///
/// ## Mapping Kaldi's `compute-fbank-feats` (and `torchaudio.compliance.kaldi.fbank`)
/// | Kaldi | here |
/// |---|---|
/// | `--sample-frequency` | `sampleRate` |
/// | `--frame-length`, `--frame-shift` (ms) | `windowLength`, `hopLength` = ms * sampleRate / 1000 |
/// | `--round-to-power-of-two` (true) | `fftSize` = next power of two of `windowLength` (else `windowLength`) |
/// | `--window-type` (`povey`, `hamming`, `hanning`, `rectangular`, `blackman`) | `window`, `periodicWindow = false` (Kaldi's windows are symmetric; `blackman` uses Kaldi's default coefficient 0.42) |
/// | `--num-mel-bins` | `melBins` |
/// | `--low-freq` (20), `--high-freq` (0 = Nyquist, negative = offset from Nyquist) | `fMin`, `fMax` (nil = Nyquist, else the absolute frequency) |
/// | mel banks | `melScale = .htk`, `melTriangles = .linearInMel`, `melNormalization = .none` |
/// | `--preemphasis-coefficient` (0.97) | `preemphasis`, `preemphasisScope = .frame` |
/// | `--remove-dc-offset` (true) | `removeDCOffset` |
/// | `--use-power` (true) | `power` = 2 (false: 1) |
/// | `--use-log-fbank` with the floor `std::numeric_limits<float>::epsilon()` | `logGuardKind = .clamp`, `logGuard = Float.ulpOfOne` |
/// | `--dither` (1.0, on the int16 scale) | `dither`; Kaldi works on int16-scaled samples: `sampleScale = 32768` keeps its numbers (and its dither) unchanged. Kaldi dithers each frame's copy of the samples; here each sample is dithered once (the same noise level, and chunking-invariant) |
/// | `--snip-edges` (true) | `center = false` (`--snip-edges=false` is not supported) |
/// | `--use-energy`, `--raw-energy`, `--energy-floor`, VTLN, `--htk-compat` | unsupported (no energy column, no warping) |
public struct FrontendConfig: Codable, Sendable, Equatable {
    /// Samples per second of the input signal.
    public var sampleRate: Int = 16000
    /// Samples under the analysis window (400 = 25 ms at 16 kHz).
    public var windowLength: Int = 400
    /// Samples between successive frames (160 = 10 ms at 16 kHz).
    public var hopLength: Int = 160
    /// FFT points; the windowed frame is zero-padded to this length. Must be >= `windowLength`.
    public var fftSize: Int = 512
    /// Mel filters, i.e. feature columns.
    public var melBins: Int = 80
    /// Lower edge of the first mel filter, Hz.
    public var fMin: Float = 0
    /// Upper edge of the last mel filter, Hz; nil means `sampleRate / 2`.
    public var fMax: Float? = nil
    /// Pre-emphasis coefficient; nil switches it off.
    public var preemphasis: Float? = 0.97
    /// Whether pre-emphasis runs over the continuous signal (NeMo) or inside each frame (Kaldi).
    public var preemphasisScope: PreemphasisScope = .signal
    public var window: WindowFunction = .hann
    /// Periodic (DFT-even, `torch.hann_window(periodic=True)`, `scipy.signal.get_window`) or symmetric
    /// (`periodic=False`, `numpy.hanning`, Kaldi, NeMo) window.
    public var periodicWindow: Bool = true
    public var melScale: MelScale = .slaney
    /// Whether the filters are triangles over FFT-bin frequency in Hz (librosa, NeMo) or over mel (Kaldi).
    public var melTriangles: MelTriangles = .linearInHertz
    public var melNormalization: MelNormalization = .slaney
    /// Exponent applied to the FFT magnitude: 2 = power spectrum, 1 = magnitude.
    public var power: Float = 2
    /// The value that keeps `log` away from zero; see `logGuardKind`.
    public var logGuard: Float = 0x1p-24
    public var logGuardKind: LogGuardKind = .add
    /// Subtract each frame's mean before windowing (Kaldi's `--remove-dc-offset`).
    public var removeDCOffset: Bool = false
    /// Standard deviation of the Gaussian noise added to every (scaled) sample; 0 switches it off.
    /// The noise comes from the frontend instance's own seeded generator.
    public var dither: Float = 0
    /// Factor applied to the input samples before anything else (32768 to reproduce Kaldi's numbers on
    /// float samples in [-1, 1]).
    public var sampleScale: Float = 1
    /// Centred frames with `fftSize / 2` zeros of padding at each end (NeMo, `librosa.stft(center=True)`,
    /// `pad_mode="constant"`). A centred frame is released about `windowLength / 2` samples after its
    /// centre when streaming (the stream's history budgets `fftSize / 2`, which is never less).
    public var center: Bool = false
    public var normalization: FeatureNormalizationKind = .none

    /// Earshot's base model.
    public init() {}

    /// A config with every field given; unnamed fields keep the base model's defaults.
    public init(
        sampleRate: Int = 16000, windowLength: Int = 400, hopLength: Int = 160, fftSize: Int = 512,
        melBins: Int = 80, fMin: Float = 0, fMax: Float? = nil,
        preemphasis: Float? = 0.97, preemphasisScope: PreemphasisScope = .signal,
        window: WindowFunction = .hann, periodicWindow: Bool = true,
        melScale: MelScale = .slaney, melTriangles: MelTriangles = .linearInHertz,
        melNormalization: MelNormalization = .slaney, power: Float = 2,
        logGuard: Float = 0x1p-24, logGuardKind: LogGuardKind = .add,
        removeDCOffset: Bool = false, dither: Float = 0, sampleScale: Float = 1,
        center: Bool = false, normalization: FeatureNormalizationKind = .none
    ) {
        self.sampleRate = sampleRate; self.windowLength = windowLength; self.hopLength = hopLength
        self.fftSize = fftSize; self.melBins = melBins; self.fMin = fMin; self.fMax = fMax
        self.preemphasis = preemphasis; self.preemphasisScope = preemphasisScope
        self.window = window; self.periodicWindow = periodicWindow
        self.melScale = melScale; self.melTriangles = melTriangles; self.melNormalization = melNormalization
        self.power = power; self.logGuard = logGuard; self.logGuardKind = logGuardKind
        self.removeDCOffset = removeDCOffset; self.dither = dither; self.sampleScale = sampleScale
        self.center = center; self.normalization = normalization
    }

    /// NeMo's `AudioToMelSpectrogramPreprocessor` at inference (dither off, `pad_to = 0`).
    public static func nemo(sampleRate: Int = 16000, melBins: Int = 80,
                            normalization: FeatureNormalizationKind = .perFeature) -> FrontendConfig {
        FrontendConfig(sampleRate: sampleRate, windowLength: sampleRate / 50, hopLength: sampleRate / 100,
                       fftSize: nextPowerOfTwo(sampleRate / 50), melBins: melBins,
                       preemphasis: 0.97, preemphasisScope: .signal, window: .hann, periodicWindow: false,
                       melScale: .slaney, melTriangles: .linearInHertz, melNormalization: .slaney,
                       power: 2, logGuard: 0x1p-24, logGuardKind: .add, center: true,
                       normalization: normalization)
    }

    /// Kaldi's `compute-fbank-feats` defaults (25 ms / 10 ms, povey, low-freq 20) without dither,
    /// on float samples in [-1, 1] (`sampleScale = 32768` gives Kaldi's int16-scale numbers).
    public static func kaldi(sampleRate: Int = 16000, melBins: Int = 80, sampleScale: Float = 1) -> FrontendConfig {
        FrontendConfig(sampleRate: sampleRate, windowLength: sampleRate / 40, hopLength: sampleRate / 100,
                       fftSize: nextPowerOfTwo(sampleRate / 40), melBins: melBins, fMin: 20, fMax: nil,
                       preemphasis: 0.97, preemphasisScope: .frame, window: .povey, periodicWindow: false,
                       melScale: .htk, melTriangles: .linearInMel, melNormalization: .none,
                       power: 2, logGuard: Float.ulpOfOne, logGuardKind: .clamp, removeDCOffset: true,
                       dither: 0, sampleScale: sampleScale, center: false, normalization: .none)
    }

    /// `fMax`, or Nyquist when it is nil.
    public var effectiveFMax: Float { fMax ?? Float(sampleRate) / 2 }

    /// Frames per second of audio (`sampleRate / hopLength`).
    public var framesPerSecond: Double { Double(sampleRate) / Double(hopLength) }

    /// Seconds of audio per output frame of an encoder that subsamples these frames by `subsampling`.
    public func encoderFrameDuration(subsampling: Int) -> Double {
        Double(hopLength) / Double(sampleRate) * Double(subsampling)
    }

    /// Frames a complete signal of `samples` samples gives.
    ///
    /// - `center == false` (Kaldi `snip_edges=true`): `1 + (N - windowLength) / hopLength` for
    ///   `N >= windowLength`, else 0: a frame is only produced when all its samples exist.
    /// - `center == true` (torch/librosa): `1 + (N + 2 * (fftSize / 2) - fftSize) / hopLength` for
    ///   `N >= 1` (that is `1 + N / hopLength` for even `fftSize`), and 0 for an empty signal
    ///   (librosa would return one all-padding frame; an empty stream has no frames here).
    public func frameCount(samples n: Int) -> Int {
        if center {
            guard n > 0 else { return 0 }
            let padded = n + 2 * (fftSize / 2)
            return padded >= fftSize ? 1 + (padded - fftSize) / hopLength : 0
        }
        return n >= windowLength ? 1 + (n - windowLength) / hopLength : 0
    }

    /// Largest values `validate` accepts: far beyond any speech frontend, small enough that sizes derived
    /// from them cannot overflow and allocations stay modest.
    public enum Limits {
        public static let sampleRate = 384_000
        /// Also the largest window.
        public static let fftSize = 65_536
        /// One second at the highest rate.
        public static let hopLength = 384_000
        public static let melBins = 1024
    }

    /// Checks every field; `streaming` additionally refuses normalisations that need the whole utterance.
    public func validate(streaming: Bool = false) throws(FrontendConfigError) {
        func bad(_ field: String, _ reason: String) -> FrontendConfigError { .invalidField(field, reason: reason) }
        // Upper bounds first: they keep every later size computation, the FFT plan's Int32 length and
        // the buffers a frontend allocates within reason, whatever a model file says.
        let L = Self.Limits.self
        guard sampleRate > 0, sampleRate <= L.sampleRate else {
            throw bad("sampleRate", "is \(sampleRate); it must be in 1...\(L.sampleRate) samples per second")
        }
        guard fftSize >= 1, fftSize <= L.fftSize else { throw bad("fftSize", "is \(fftSize); it must be in 1...\(L.fftSize) points") }
        guard windowLength >= 1, windowLength <= L.fftSize else {
            throw bad("windowLength", "is \(windowLength); it must be in 1...\(L.fftSize) samples")
        }
        guard hopLength >= 1, hopLength <= L.hopLength else {
            throw bad("hopLength", "is \(hopLength); it must be in 1...\(L.hopLength) samples")
        }
        guard fftSize >= windowLength else {
            throw bad("fftSize", "is \(fftSize), smaller than windowLength \(windowLength); the FFT must cover the whole window")
        }
        guard melBins >= 1, melBins <= L.melBins else {
            throw bad("melBins", "is \(melBins); it must be in 1...\(L.melBins) mel filters")
        }
        let nyquist = Float(sampleRate) / 2
        guard fMin.isFinite, fMin >= 0 else { throw bad("fMin", "is \(fMin) Hz; it must be a finite frequency >= 0") }
        if let fMax {
            guard fMax.isFinite, fMax > 0 else { throw bad("fMax", "is \(fMax) Hz; it must be a positive frequency (or null for Nyquist)") }
            guard fMax <= nyquist else {
                throw bad("fMax", "is \(fMax) Hz, above the Nyquist frequency \(nyquist) Hz of sampleRate \(sampleRate)")
            }
        }
        guard fMin < effectiveFMax else {
            throw bad("fMin", "is \(fMin) Hz, not below the upper edge \(effectiveFMax) Hz (fMax or Nyquist)")
        }
        // Narrower, and the filters' corners can round to one frequency (zero-width filters, whose
        // normalisation divides by zero and makes every feature NaN).
        guard effectiveFMax - fMin >= Float(melBins) else {
            throw bad("fMax", "leaves \(effectiveFMax - fMin) Hz above fMin \(fMin) Hz for \(melBins) mel filters; give them at least 1 Hz each")
        }
        if let p = preemphasis {
            guard p.isFinite, p >= 0, p <= 1 else { throw bad("preemphasis", "is \(p); it must be in 0...1 (or null for none)") }
        }
        guard power.isFinite, power > 0 else { throw bad("power", "is \(power); the magnitude exponent must be positive (2 = power, 1 = magnitude)") }
        guard logGuard.isFinite, logGuard > 0 else {
            throw bad("logGuard", "is \(logGuard); it must be a positive value so that log never sees 0 (NeMo: 2^-24, Kaldi: float epsilon)")
        }
        guard dither.isFinite, dither >= 0 else { throw bad("dither", "is \(dither); it must be >= 0 (0 = off)") }
        guard sampleScale.isFinite, sampleScale > 0 else { throw bad("sampleScale", "is \(sampleScale); it must be a positive factor") }
        if streaming && normalization == .perFeature {
            throw bad("normalization", "is perFeature, which normalises over the whole utterance and so cannot stream; use global statistics or none for streaming")
        }
    }

    // MARK: Codable with defaults and unknown-key rejection

    private enum CodingKeys: String, CodingKey, CaseIterable {
        case sampleRate, windowLength, hopLength, fftSize, melBins, fMin, fMax, preemphasis, preemphasisScope
        case window, periodicWindow, melScale, melTriangles, melNormalization, power, logGuard, logGuardKind
        case removeDCOffset, dither, sampleScale, center, normalization
    }

    private struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    public init(from decoder: Decoder) throws {
        let known = Set(CodingKeys.allCases.map(\.rawValue))
        for key in try decoder.container(keyedBy: AnyKey.self).allKeys where !known.contains(key.stringValue) {
            throw FrontendConfigError.unknownField(key.stringValue)
        }
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = FrontendConfig()
        sampleRate = try c.decodeIfPresent(Int.self, forKey: .sampleRate) ?? d.sampleRate
        windowLength = try c.decodeIfPresent(Int.self, forKey: .windowLength) ?? d.windowLength
        hopLength = try c.decodeIfPresent(Int.self, forKey: .hopLength) ?? d.hopLength
        fftSize = try c.decodeIfPresent(Int.self, forKey: .fftSize) ?? d.fftSize
        melBins = try c.decodeIfPresent(Int.self, forKey: .melBins) ?? d.melBins
        fMin = try c.decodeIfPresent(Float.self, forKey: .fMin) ?? d.fMin
        fMax = try c.decodeIfPresent(Float.self, forKey: .fMax)
        // An explicit null switches pre-emphasis off; a missing key keeps the default.
        preemphasis = c.contains(.preemphasis) ? try c.decodeIfPresent(Float.self, forKey: .preemphasis) : d.preemphasis
        preemphasisScope = try c.decodeIfPresent(PreemphasisScope.self, forKey: .preemphasisScope) ?? d.preemphasisScope
        window = try c.decodeIfPresent(WindowFunction.self, forKey: .window) ?? d.window
        periodicWindow = try c.decodeIfPresent(Bool.self, forKey: .periodicWindow) ?? d.periodicWindow
        melScale = try c.decodeIfPresent(MelScale.self, forKey: .melScale) ?? d.melScale
        melTriangles = try c.decodeIfPresent(MelTriangles.self, forKey: .melTriangles) ?? d.melTriangles
        melNormalization = try c.decodeIfPresent(MelNormalization.self, forKey: .melNormalization) ?? d.melNormalization
        power = try c.decodeIfPresent(Float.self, forKey: .power) ?? d.power
        logGuard = try c.decodeIfPresent(Float.self, forKey: .logGuard) ?? d.logGuard
        logGuardKind = try c.decodeIfPresent(LogGuardKind.self, forKey: .logGuardKind) ?? d.logGuardKind
        removeDCOffset = try c.decodeIfPresent(Bool.self, forKey: .removeDCOffset) ?? d.removeDCOffset
        dither = try c.decodeIfPresent(Float.self, forKey: .dither) ?? d.dither
        sampleScale = try c.decodeIfPresent(Float.self, forKey: .sampleScale) ?? d.sampleScale
        center = try c.decodeIfPresent(Bool.self, forKey: .center) ?? d.center
        normalization = try c.decodeIfPresent(FeatureNormalizationKind.self, forKey: .normalization) ?? d.normalization
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(sampleRate, forKey: .sampleRate)
        try c.encode(windowLength, forKey: .windowLength)
        try c.encode(hopLength, forKey: .hopLength)
        try c.encode(fftSize, forKey: .fftSize)
        try c.encode(melBins, forKey: .melBins)
        try c.encode(fMin, forKey: .fMin)
        try c.encode(fMax, forKey: .fMax)  // null = Nyquist, written so the file says so
        try c.encode(preemphasis, forKey: .preemphasis)
        try c.encode(preemphasisScope, forKey: .preemphasisScope)
        try c.encode(window, forKey: .window)
        try c.encode(periodicWindow, forKey: .periodicWindow)
        try c.encode(melScale, forKey: .melScale)
        try c.encode(melTriangles, forKey: .melTriangles)
        try c.encode(melNormalization, forKey: .melNormalization)
        try c.encode(power, forKey: .power)
        try c.encode(logGuard, forKey: .logGuard)
        try c.encode(logGuardKind, forKey: .logGuardKind)
        try c.encode(removeDCOffset, forKey: .removeDCOffset)
        try c.encode(dither, forKey: .dither)
        try c.encode(sampleScale, forKey: .sampleScale)
        try c.encode(center, forKey: .center)
        try c.encode(normalization, forKey: .normalization)
    }
}

/// Where pre-emphasis runs: over the continuous signal (NeMo; continuous across frames and chunks)
/// or inside each frame after DC removal (Kaldi; the first sample of a frame uses itself as predecessor).
public enum PreemphasisScope: String, Codable, Sendable, CaseIterable {
    case signal, frame
}

/// The analysis window. Symmetric forms use `N - 1` in the denominator, periodic ones `N`.
public enum WindowFunction: String, Codable, Sendable, CaseIterable {
    /// `0.5 - 0.5 cos(2 pi n / D)`.
    case hann
    /// `0.54 - 0.46 cos(2 pi n / D)`.
    case hamming
    /// Kaldi's default: `(0.5 - 0.5 cos(2 pi n / D))^0.85`.
    case povey
    /// `0.42 - 0.5 cos(2 pi n / D) + 0.08 cos(4 pi n / D)`.
    case blackman
    /// Triangle `1 - |2 n / D - 1|`.
    case bartlett
    /// All ones.
    case rectangular
}

/// The mel scale used to space the filters.
public enum MelScale: String, Codable, Sendable, CaseIterable {
    /// `2595 log10(1 + f / 700)` (HTK; Kaldi's `1127 ln(1 + f / 700)` is the same scale).
    case htk
    /// Slaney's Auditory Toolbox: linear below 1 kHz, logarithmic above (librosa's default, NeMo).
    case slaney
}

/// The shape of each filter along the frequency axis.
public enum MelTriangles: String, Codable, Sendable, CaseIterable {
    /// Triangles linear in Hz between mel-spaced corner frequencies (librosa, NeMo).
    case linearInHertz
    /// Triangles linear in mel, evaluated at each FFT bin's mel value (Kaldi).
    case linearInMel
}

/// Filter weight normalisation.
public enum MelNormalization: String, Codable, Sendable, CaseIterable {
    /// Peak weight 1 (librosa `norm=None`, Kaldi).
    case none
    /// Each filter scaled by `2 / (upper Hz - lower Hz)` for constant area (librosa `norm='slaney'`, NeMo).
    case slaney
}

/// How the log keeps away from zero.
public enum LogGuardKind: String, Codable, Sendable, CaseIterable {
    /// `log(x + logGuard)` (NeMo's default `add`, 2^-24).
    case add
    /// `log(max(x, logGuard))` (NeMo's `clamp`; Kaldi with float epsilon).
    case clamp
}

/// Normalisation of the log-mel features.
public enum FeatureNormalizationKind: String, Codable, Sendable, CaseIterable {
    case none
    /// NeMo's `per_feature`: each mel bin minus its mean over the utterance, divided by its unbiased
    /// standard deviation plus 1e-5. Needs the whole utterance, so only for offline use.
    case perFeature
    /// `(x - mean) / std` per mel bin with statistics supplied as `FeatureNormalization`.
    case global
}

/// Global per-mel-bin statistics for `FeatureNormalizationKind.global`, e.g. stored in the model file.
public struct FeatureNormalization: Codable, Sendable, Equatable {
    /// One mean per mel bin.
    public var mean: [Float]
    /// One standard deviation per mel bin; every entry must be positive.
    public var std: [Float]

    public init(mean: [Float], std: [Float]) {
        self.mean = mean
        self.std = std
    }
}

/// A frontend configuration or its statistics cannot be used; `field` is the JSON key in the model
/// file's frontend metadata.
public enum FrontendConfigError: Error, CustomStringConvertible, Equatable {
    case invalidField(String, reason: String)
    case unknownField(String)

    /// The offending key.
    public var field: String {
        switch self {
        case .invalidField(let f, _), .unknownField(let f): f
        }
    }

    public var description: String {
        switch self {
        case .invalidField(let f, let reason): "frontend config: '\(f)' \(reason)"
        case .unknownField(let f):
            "frontend config: unknown key '\(f)' (a typo? known keys: sampleRate, windowLength, hopLength, fftSize, melBins, fMin, fMax, preemphasis, preemphasisScope, window, periodicWindow, melScale, melTriangles, melNormalization, power, logGuard, logGuardKind, removeDCOffset, dither, sampleScale, center, normalization)"
        }
    }
}

func nextPowerOfTwo(_ n: Int) -> Int {
    var p = 1
    while p < n { p <<= 1 }
    return p
}
