/// A sample encoding the capture loop can read from an ALSA device. Everything is converted to Float in
/// [-1, 1) before downmixing, so the choice only matters to the device; 16-bit is what nearly every
/// microphone and USB interface offers natively, which is why it is tried first by default.
public enum CaptureSampleFormat: String, Sendable, CaseIterable, CustomStringConvertible {
    /// Signed 16-bit little-endian integers.
    case s16LE = "S16_LE"
    /// Signed 32-bit little-endian integers (24-bit interfaces usually deliver these, left-justified).
    case s32LE = "S32_LE"
    /// IEEE 754 32-bit little-endian floats.
    case float32LE = "FLOAT_LE"

    public var bytesPerSample: Int {
        switch self {
        case .s16LE: return 2
        case .s32LE, .float32LE: return 4
        }
    }

    public var description: String { rawValue }
}

/// A period or buffer length, given in frames (device-rate samples per channel) or as a time.
/// ALSA takes the nearest size the device supports; `CaptureDeviceInfo` reports what it chose.
public enum CaptureSize: Sendable, Equatable, CustomStringConvertible {
    case frames(Int)
    case microseconds(Int)

    public var description: String {
        switch self {
        case .frames(let n): return "\(n) frames"
        case .microseconds(let us): return "\(us) us"
        }
    }
}

/// How long to wait before reopening a device that could not be opened or went away: `initialDelay`
/// after the first failure, doubling each further consecutive failure up to `maxDelay`. A device that
/// opens and delivers audio resets the sequence.
public struct CaptureRetryPolicy: Sendable, Equatable {
    public var initialDelay: Duration
    public var maxDelay: Duration

    public init(initialDelay: Duration = .milliseconds(250), maxDelay: Duration = .seconds(10)) {
        self.initialDelay = initialDelay
        self.maxDelay = maxDelay
    }

    /// The wait before retry number `attempt` (1-based).
    public func delay(forAttempt attempt: Int) -> Duration {
        var delay = initialDelay
        var remaining = max(attempt - 1, 0)
        while remaining > 0 && delay < maxDelay {
            delay = delay * 2
            remaining -= 1
        }
        return min(delay, maxDelay)
    }
}

/// Everything that selects and configures the capture device. The defaults suit a speech recogniser:
/// 16 kHz mono is asked for (so a device that offers it needs no resampling), 20 ms periods keep latency
/// low, and a 500 ms ALSA buffer absorbs a capture thread descheduled for a moment without an overrun
/// (a capture buffer adds no latency: the loop reads every period as soon as it is ready).
public struct CaptureConfiguration: Sendable, Equatable {
    /// Any ALSA PCM name: `default`, `hw:1,0`, `plughw:CARD=Mic,DEV=0`, or one defined in an asoundrc.
    public var device: String
    /// An extra ALSA configuration file read on top of the system's (`/usr/share/alsa/alsa.conf` and
    /// the user's `~/.asoundrc`) for this capture only, so PCMs it defines can be named in `device`
    /// without touching the environment of the whole process (ALSA_CONFIG_PATH would be read once per
    /// process, and replaces the system configuration instead of adding to it).
    public var alsaConfigFile: String?
    /// The rate asked of the device; it may choose the nearest rate it supports.
    public var sampleRate: Int
    /// The channel count asked of the device (nearest supported is taken); all are averaged to mono.
    public var channels: Int
    /// Formats to try, in order of preference.
    public var formats: [CaptureSampleFormat]
    public var periodSize: CaptureSize
    public var bufferSize: CaptureSize
    /// The rate of the samples handed to the consumer.
    public var outputRate: Int
    public var resamplingQuality: ResamplingQuality
    /// How many output samples the consumer may fall behind before the oldest are dropped.
    public var ringCapacity: Int
    public var retry: CaptureRetryPolicy
    /// A running device that delivers nothing for this long is treated as gone and reopened. Real
    /// hardware delivers a period every few milliseconds, so only a wedged driver or a vanished
    /// network/Bluetooth source trips it.
    public var stallTimeout: Duration
    /// Stop by itself after this much device audio (at the device's actual rate), for fixed-length
    /// recordings; nil captures until `stop()`.
    public var stopAfter: Duration?

    public init(
        device: String = "default",
        alsaConfigFile: String? = nil,
        sampleRate: Int = 16000,
        channels: Int = 1,
        formats: [CaptureSampleFormat] = [.s16LE, .float32LE, .s32LE],
        periodSize: CaptureSize = .microseconds(20_000),
        bufferSize: CaptureSize = .microseconds(500_000),
        outputRate: Int = 16000,
        resamplingQuality: ResamplingQuality = .medium,
        ringCapacity: Int = 16000 * 30,
        retry: CaptureRetryPolicy = CaptureRetryPolicy(),
        stallTimeout: Duration = .seconds(5),
        stopAfter: Duration? = nil
    ) {
        self.device = device
        self.alsaConfigFile = alsaConfigFile
        self.sampleRate = sampleRate
        self.channels = channels
        self.formats = formats
        self.periodSize = periodSize
        self.bufferSize = bufferSize
        self.outputRate = outputRate
        self.resamplingQuality = resamplingQuality
        self.ringCapacity = ringCapacity
        self.retry = retry
        self.stallTimeout = stallTimeout
        self.stopAfter = stopAfter
    }
}
