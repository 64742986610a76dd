"""PES V2: accounting flows (PES_Aller) to the public accountant's Hélios, and its answers."""
