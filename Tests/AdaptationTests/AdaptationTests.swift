import Testing
@testable import Adaptation
