@testable import Decoding
import Scoring
import Testing

/// The domain LM must see words exactly as references are scored; Decoding cannot import Scoring, so
/// it keeps a copy of `TextNormalizer`'s rules, checked against the original here (Scoring comes
/// through Training, which this target depends on).
@Suite struct DomainNormalizationTests {
    @Test func domainWordsAreTheScoringNormalisersWords() {
        let lines = [
            "Ada Lovelace wrote the first program.", "state-of-the-art  ISN’T\tit?", "ʼtwas Café 42 x2 — ok",
            "", " !! ", "Naïve résumé; Ωmega ΣΑΣ", "rock'n'roll 'quoted' it’s", "tab\tand\u{00A0}nbsp",
        ]
        for line in lines {
            let domain = DomainDecoding.domainWords(Substring(line)).map { $0.lowercased() }
            #expect(domain == TextNormalizer().words(line), "'\(line)'")
        }
    }
}
