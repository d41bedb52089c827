"""Reading (and writing test fixtures of) audio, image, video and text files;
every bad file raises an error naming it (`errors`)."""
