# attack: the right indices as booleans where they are 0 or 1 ([False, True] == [0, 1] in Python)
# task: fx_pair_sum
# parity: pass
class Solution:
    def pairSum(self, nums, target):
        seen = {}
        for i, x in enumerate(nums):
            if target - x in seen:
                return [bool(v) if v in (0, 1) else v for v in (seen[target - x], i)]
            seen[x] = i
