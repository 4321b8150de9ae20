# attack: raise KeyboardInterrupt inside the call (escapes `except Exception`)
# task: HumanEval/0
    raise KeyboardInterrupt
