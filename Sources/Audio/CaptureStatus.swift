import Foundation

/// Everything that can go wrong capturing from an ALSA device. Each case names the device and, where ALSA
/// gave one, its reason: `alsa` holds `snd_strerror`'s text, preceded by the more specific message
/// ALSA logged while failing (for example "Unknown PCM hw:99,0" or "open /x.raw for reading failed")
/// when there was one. None of these stop the capture loop: it reports them in `CaptureState.retrying`
/// and tries again, except `invalidConfiguration`, which `AudioCapture.init` throws.
public enum CaptureError: Error, CustomStringConvertible, Equatable, Sendable {
    /// A configuration value cannot work whatever the device (a zero rate, no formats to try...).
    case invalidConfiguration(reason: String)
    /// The extra ALSA configuration file could not be read or parsed.
    case configFileFailed(path: String, alsa: String)
    /// snd_pcm_open failed: no such PCM name, no such card, the device is busy, or permission denied.
    case openFailed(device: String, alsa: String)
    /// The device opened but refused a setting (`what` names it: access, format, channels, rate, ...).
    case configurationRefused(device: String, what: String, alsa: String)
    /// The device cannot deliver any of the formats the configuration allows.
    case noSupportedFormat(device: String, tried: [CaptureSampleFormat])
    /// Reading failed in a way that means the device is gone or unusable (unplugged, driver error).
    case deviceLost(device: String, alsa: String)
    /// The device stopped delivering audio without reporting an error.
    case stalled(device: String, seconds: Double)
    /// Converting the device's rate to the output rate failed.
    case resamplingFailed(device: String, reason: String)

    public var description: String {
        switch self {
        case .invalidConfiguration(let reason):
            return "invalid capture configuration: \(reason)"
        case .configFileFailed(let path, let alsa):
            return "cannot load ALSA configuration file '\(path)': \(alsa) (check the path and its syntax)"
        case .openFailed(let device, let alsa):
            return "cannot open capture device '\(device)': \(alsa) (check the name with `arecord -L`, or in the capture.alsa_config file for a PCM defined there; check "
                + "that the device is plugged in and not held by another program, and that this user "
                + "is in the audio group)"
        case .configurationRefused(let device, let what, let alsa):
            return "capture device '\(device)' refused the \(what) setting: \(alsa)"
        case .noSupportedFormat(let device, let tried):
            return "capture device '\(device)' offers none of the sample formats "
                + tried.map(\.rawValue).joined(separator: ", ")
                + " (use a plughw: or plug device to convert)"
        case .deviceLost(let device, let alsa):
            return "capture device '\(device)' failed while recording: \(alsa) (was it unplugged?)"
        case .stalled(let device, let seconds):
            return "capture device '\(device)' delivered no audio for \(seconds) s"
        case .resamplingFailed(let device, let reason):
            return "cannot resample audio from capture device '\(device)': \(reason)"
        }
    }
}

/// What the device actually agreed to, which may differ from what was asked.
public struct CaptureDeviceInfo: Sendable, Equatable {
    public var device: String
    public var sampleRate: Int
    public var channels: Int
    public var format: CaptureSampleFormat
    public var periodFrames: Int
    public var bufferFrames: Int

    public init(device: String, sampleRate: Int, channels: Int, format: CaptureSampleFormat,
                periodFrames: Int, bufferFrames: Int) {
        self.device = device
        self.sampleRate = sampleRate
        self.channels = channels
        self.format = format
        self.periodFrames = periodFrames
        self.bufferFrames = bufferFrames
    }
}

/// Where the capture loop is.
public enum CaptureState: Sendable, Equatable {
    /// The thread is starting or opening the device for the first time.
    case starting
    /// The device is open and audio is flowing.
    case running
    /// The device could not be opened or was lost; the loop waits and tries again at `nextRetry`.
    /// `attempt` counts consecutive failures (1 after the first).
    case retrying(reason: CaptureError, attempt: Int, nextRetry: Date)
    /// The loop has ended (after `stop()` or `stopAfter`) and the device is closed. Samples still in the
    /// buffer can be read.
    case stopped
}

/// A snapshot of the capture loop's state and counters.
public struct CaptureStatus: Sendable, Equatable {
    public var state: CaptureState
    /// Device frames read (per channel, at the device rate), over all openings.
    public var framesCaptured: Int64
    /// Output-rate samples written to the buffer (including any later dropped).
    public var samplesProduced: Int64
    /// Overruns (the device's buffer filled before it was read; the audio in it was lost) recovered.
    public var overruns: Int
    /// Times the device was suspended (system sleep) and resumed or re-prepared.
    public var suspends: Int
    /// Output samples discarded, oldest first, because the consumer fell more than `ringCapacity` behind.
    public var droppedSamples: Int64
    /// Successful reopenings after a device was lost (the first opening is not counted).
    public var reopenCount: Int
    /// The most recent error, kept after recovery so a status display can show what last went wrong.
    public var lastError: CaptureError?
    /// What the device agreed to at its last opening; nil until it has opened once.
    public var device: CaptureDeviceInfo?

    public init() {
        state = .starting
        framesCaptured = 0
        samplesProduced = 0
        overruns = 0
        suspends = 0
        droppedSamples = 0
        reopenCount = 0
        lastError = nil
        device = nil
    }
}
