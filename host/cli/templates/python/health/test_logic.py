import unittest

from logic import decide


class DecideTest(unittest.TestCase):
    def test_a_wave_waits_then_proceeds_and_rolls_back_past_the_failure_share(self):
        self.assertEqual(decide({}, 60, 0, None, 60, 0), ("wait", 5))
        self.assertEqual(decide({}, 100, 0, 20, 60, 0), ("wait", 40))
        self.assertEqual(decide({}, 100, 0, 60, 60, 0), ("proceed", None))
        kind, reason = decide({"maxFailurePercent": 5}, 810, 90, 10, 60, 0)
        self.assertEqual(kind, "roll-back")
        self.assertIn("90 of 900", reason)

    def test_a_bad_parameter_is_named(self):
        with self.assertRaisesRegex(ValueError, "maxFailurePercent"):
            decide({"maxFailurePercent": 101}, 1, 0, None, 0, 0)
        with self.assertRaisesRegex(ValueError, "pollSecs"):
            decide({"pollSecs": 5}, 1, 0, None, 0, 0)


if __name__ == "__main__":
    unittest.main()
